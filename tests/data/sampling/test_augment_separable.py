"""``transformed_crop`` (the separable engine) against the scipy reference
(``_spatial_reference.py``: the former ``"scipy"`` engine).

Both interpolate trilinearly (bilinear in 2D) with the same boundary rule; the separable engine
computes in float32 with another order of operations, so images agree to float32 rounding and a
label voxel may differ only where its interpolated value is 0.5 up to rounding (a tie of the
threshold, e.g. a sample point half-way between a lesion voxel and a background voxel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from _spatial_reference import ScipyPatchSampler, label_value, scipy_transformed_crop
from scipy import ndimage

from rdcl.config import DataConfig
from rdcl.data import PatchSampler
from rdcl.data.sampling.augment import AugmentParams, transformed_crop


def _assert_same(got, want, label, start, patch, angle, scale):
    assert got[0].dtype == np.float32 and got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    if label is None:
        assert got[1] is None and want[1] is None
        return
    assert got[1].dtype == np.uint8 and got[1].shape == want[1].shape
    differ = got[1] != want[1]
    if differ.any():
        value = label_value(label, start, patch, angle, scale)
        np.testing.assert_allclose(value[differ], 0.5, atol=1e-6)


def test_separable_engine_matches_scipy_on_random_transforms():
    rng = np.random.default_rng(0)
    for _ in range(120):
        dim = int(rng.choice([2, 3]))
        shape = tuple(int(n) for n in rng.integers(1, 30, size=dim))
        image = rng.standard_normal((2, *shape)).astype(np.float32)
        label = (rng.random(shape) > 0.6).astype(np.uint8)
        patch = tuple(int(p) for p in rng.integers(1, 25, size=dim))
        start = [int(rng.integers(-p + 1, n)) for n, p in zip(shape, patch, strict=True)]
        # Rotation only, scaling only (the in-plane separable path), both; any angle.
        angle = float(rng.choice([0.0, rng.uniform(-math.pi, math.pi)]))
        scale = float(rng.choice([1.0, rng.uniform(0.7, 1.4)]))
        pad_mode = str(rng.choice(["constant", "edge"]))
        for lab in (label, None):
            kwargs = {"angle": angle, "scale": scale, "pad_mode": pad_mode}
            got = transformed_crop(image, lab, start, patch, **kwargs)
            want = scipy_transformed_crop(image, lab, start, patch, **kwargs)
            _assert_same(got, want, lab, start, patch, angle, scale)


def test_separable_engine_on_a_paper3d_sized_patch():
    # Ties of the label threshold happen here: scale 0.9 maps some rows half-way between voxels.
    rng = np.random.default_rng(1)
    shape, patch, start = (70, 200, 220), (56, 160, 192), [5, 20, 10]
    image = ndimage.gaussian_filter(rng.standard_normal((1, *shape)), 2).astype(np.float32)
    label = (image[0] > 0.05).astype(np.uint8)
    for angle, scale in ((0.2, 1.0), (0.0, 0.9), (-0.25, 1.2), (0.26, 0.85)):
        got = transformed_crop(image, label, start, patch, angle=angle, scale=scale)
        want = scipy_transformed_crop(image, label, start, patch, angle=angle, scale=scale)
        _assert_same(got, want, label, start, patch, angle, scale)
        assert got[1].any() and not got[1].all()


def test_sampler_batches_agree_across_engines():
    rng = np.random.default_rng(2)
    cases = []
    for _ in range(2):
        image = ndimage.gaussian_filter(rng.standard_normal((1, 12, 40, 44)), 1.5)
        cases.append((image.astype(np.float32), (image[0] > 0.1).astype(np.uint8)))
    cfg = DataConfig(patch_size=(8, 24, 32), batch_size=2)
    always = AugmentParams(p_rotate=1.0, p_scale=1.0)
    fast = PatchSampler(cases, cfg, seed=3, params=always)
    slow = ScipyPatchSampler(cases, cfg, seed=3, params=always)
    for step in range(4):
        a, b = fast.batch(step), slow.batch(step)
        assert torch.equal(a["case"], b["case"])
        torch.testing.assert_close(a["image"], b["image"], rtol=1e-5, atol=1e-5)
        assert (a["label"] != b["label"]).float().mean() < 1e-3
