"""Augmentation on the training device (``data.augment_on: device``) against the loader's.

The loader ships each sample's source region and drawn parameters; ``finish_batch`` applies them
with torch. Everything but the noise values must equal the loader path to float32 rounding: the
image within 1e-4 (z-scored data), a label voxel only where its interpolated value is a 0.5 tie.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from _spatial_reference import label_value, scipy_transformed_crop

from rdcl.config import ConfigError, DataConfig
from rdcl.data import PatchSampler, finish_batch, make_loader
from rdcl.data.sampling.augment import AugmentParams, IntensityDraw
from rdcl.data.sampling.device_augment import Recipe, finish_sample, is_deferred, source_region
from rdcl.errors import RdclInputError

NO_NOISE = AugmentParams(
    p_rotate=0.7, p_scale=0.7, p_brightness=0.5, p_contrast=0.5, p_gamma=0.5, p_noise=0.0
)


class _Arrays:
    def __init__(self, cases):
        self.cases = cases

    def __len__(self):
        return len(self.cases)

    def __getitem__(self, i):
        return self.cases[i]


def _cases(shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return _Arrays(
        [
            (
                rng.standard_normal((1, *shape)).astype(np.float32),
                (rng.random(shape) > 0.7).astype(np.uint8),
            )
            for _ in range(n)
        ]
    )


def test_device_transform_matches_the_loader_on_random_transforms():
    """Source region + grid_sample equals the scipy reference of transformed_crop for any angle,
    scale, patch partly or wholly outside the volume, size-1 axes, both pad modes."""
    rng = np.random.default_rng(1)
    spatial = 0
    for _ in range(150):
        dim = int(rng.choice([2, 3]))
        shape = tuple(int(n) for n in rng.integers(1, 24, size=dim))
        image = rng.standard_normal((2, *shape)).astype(np.float32)
        label = (rng.random(shape) > 0.6).astype(np.uint8)
        patch = tuple(int(p) for p in rng.integers(1, 20, size=dim))
        start = [int(rng.integers(-p + 1, n)) for n, p in zip(shape, patch, strict=True)]
        angle = float(rng.choice([0.0, rng.uniform(-math.pi, math.pi)]))
        scale = float(rng.choice([1.0, rng.uniform(0.6, 1.6)]))
        pad_mode = str(rng.choice(["constant", "edge"]))
        want = scipy_transformed_crop(
            image, label, start, patch, angle=angle, scale=scale, pad_mode=pad_mode
        )
        img, lab, fields = source_region(image, label, start, patch, angle, scale, pad_mode)
        recipe = Recipe(patch=patch, angle=angle, scale=scale, pad_mode=pad_mode, **fields)
        spatial += recipe.spatial
        got_img, got_lab = finish_sample(torch.from_numpy(img), torch.from_numpy(lab), recipe)
        assert got_img.dtype == torch.float32 and tuple(got_img.shape) == want[0].shape
        np.testing.assert_allclose(got_img.numpy(), want[0], rtol=1e-5, atol=1e-5)
        differ = got_lab.numpy().astype(np.uint8) != want[1]
        if differ.any():
            value = label_value(label, start, patch, angle, scale)
            np.testing.assert_allclose(value[differ], 0.5, atol=1e-5)
    assert spatial > 80  # most cases exercised the transform


@pytest.mark.parametrize(
    ("case_shape", "patch"),
    [
        ((20, 40, 48), (16, 32, 40)),
        ((6, 12, 10), (8, 16, 16)),
        ((40, 44), (32, 36)),
        ((5, 30, 36), (24, 28)),
    ],
    ids=["3d", "3d-padded", "2d", "2d-slices-of-3d"],
)
@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
def test_deferred_batches_equal_the_loaders(case_shape, patch, pad_mode):
    """The same draws (case, crop, rotation, scaling, flips, intensity) in both modes."""
    cfg = DataConfig(patch_size=patch, batch_size=3, foreground_oversample=0.5)
    data = _cases(case_shape)
    loader = PatchSampler(data, cfg, seed=4, params=NO_NOISE, pad_mode=pad_mode)
    device = PatchSampler(
        data, cfg, seed=4, params=NO_NOISE, pad_mode=pad_mode, augment_on="device"
    )
    transformed = 0
    for step in range(12):
        deferred = device.batch(step)
        assert is_deferred(deferred)
        transformed += sum(r.spatial for r in deferred["recipe"])
        want, got = loader.batch(step), finish_batch(deferred, "cpu")
        assert set(got) == set(want)
        torch.testing.assert_close(got["case"], want["case"])
        torch.testing.assert_close(got["image"], want["image"], rtol=1e-4, atol=1e-4)
        assert got["label"].shape == want["label"].shape
        mismatch = (got["label"] != want["label"]).float().mean().item()
        assert mismatch < 1e-3  # ties of the 0.5 threshold only (see the test above)
    assert transformed >= 10


def test_noise_has_the_drawn_variance_and_is_a_function_of_the_seed():
    zero = torch.zeros(1, 40, 50, 60)
    label = torch.zeros(40, 50, 60, dtype=torch.uint8)
    recipe = Recipe(patch=(40, 50, 60), intensity=IntensityDraw(noise_variance=0.04), noise_seed=7)
    a, _ = finish_sample(zero, label, recipe)
    b, _ = finish_sample(zero, label, recipe)
    c, _ = finish_sample(zero, label, dataclasses.replace(recipe, noise_seed=8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(a.std().item() - 0.2) < 0.005 and abs(a.mean().item()) < 0.005


def test_noise_is_drawn_as_in_loader_mode():
    """With noise on, the two modes draw everything else identically: the noise-free parts of a
    batch agree, and a deferred batch is a pure function of (seed, step)."""
    cfg = DataConfig(patch_size=(12, 20, 24), batch_size=2)
    data = _cases((14, 24, 30))
    noisy = AugmentParams(
        p_rotate=0.0,
        p_scale=0.0,
        p_noise=1.0,
        noise_variance=0.09,
        p_flip=0.0,
        p_brightness=0.0,
        p_contrast=0.0,
        p_gamma=0.0,
    )
    loader = PatchSampler(data, cfg, seed=2, params=noisy)
    device = PatchSampler(data, cfg, seed=2, params=noisy, augment_on="device")
    for step in range(4):
        deferred = device.batch(step)
        got, again = finish_batch(deferred, "cpu"), finish_batch(device.batch(step), "cpu")
        want = loader.batch(step)
        assert torch.equal(got["image"], again["image"])
        torch.testing.assert_close(got["label"], want["label"], rtol=0, atol=0)
        for b, recipe in enumerate(deferred["recipe"]):  # the difference of two noises
            residual = (got["image"][b] - want["image"][b]).std().item()
            expected = math.sqrt(2 * recipe.intensity.noise_variance)
            assert abs(residual - expected) < 0.03 * expected + 1e-3


def test_deferred_batches_cross_worker_processes():
    """Workers ship regions and recipes through the DataLoader unchanged."""
    cfg = DataConfig(patch_size=(8, 16, 16), batch_size=2)
    sampler = PatchSampler(_cases((10, 20, 20)), cfg, seed=5, params=NO_NOISE, augment_on="device")
    inline = [finish_batch(b, "cpu") for b in make_loader(sampler, 0, 4, 0)]
    workers = [finish_batch(b, "cpu") for b in make_loader(sampler, 0, 4, 2)]
    for a, b in zip(inline, workers, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_without_augmentation_device_mode_is_the_plain_batch():
    cfg = DataConfig(patch_size=(8, 16, 16), batch_size=2, augment=False, augment_on="device")
    data = _cases((10, 20, 20))
    sampler = PatchSampler(data, cfg, seed=5)
    batch = sampler.batch(0)
    assert not is_deferred(batch)
    plain = PatchSampler(data, dataclasses.replace(cfg, augment_on="loader"), seed=5).batch(0)
    assert torch.equal(finish_batch(batch, "cpu")["image"], plain["image"])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match=r"data\.augment_on must be one of .*found 'gpu'"):
        DataConfig(augment_on="gpu")
    with pytest.raises(RdclInputError, match="augment_on must be one of"):
        PatchSampler(_cases((4, 8, 8)), DataConfig(patch_size=(4, 8, 8)), seed=0, augment_on="x")
    img, lab = torch.zeros(1, 5, 6, 7), torch.zeros(5, 6, 7)
    with pytest.raises(ValueError, match=r"source region \(5, 6, 7\) does not match"):
        finish_sample(img, lab, Recipe(patch=(4, 6, 7)))
