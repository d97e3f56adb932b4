from __future__ import annotations

import numpy as np
import pytest
import torch

from rdcl.config import DataConfig
from rdcl.data.datasets.layout import DatasetError
from rdcl.data.sampling.loader import make_loader
from rdcl.data.sampling.sampler import PatchSampler, num_foreground_samples


def _volume(shape=(20, 40, 40), lesion=np.s_[10:12, 20:22, 20:22]):
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, size=(1, *shape)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[lesion] = 1
    return image, label


@pytest.mark.parametrize(
    ("batch", "p", "forced"),
    # B - round(B * (1 - p)): 2 - round(1.34); 3 - round(2.01); 12 - round(8.04); 1 - round(0.67)
    [(2, 0.33, 1), (3, 0.33, 1), (12, 0.33, 4), (1, 0.33, 0), (4, 0.0, 0), (4, 1.0, 4)],
)
def test_num_foreground_samples(batch, p, forced):
    assert num_foreground_samples(batch, p) == forced


def test_foreground_oversampling_fraction():
    # One 20x40x40 volume with a 2x2x2 lesion; patch 4x8x8, batch 3, p = 0.33 -> the last sample
    # of each batch is forced onto the lesion. A random 4x8x8 patch overlaps the lesion with
    # probability about (5/17) * (9/33)^2 = 2 %, so random samples rarely contain it.
    image, label = _volume()
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=3, foreground_oversample=0.33)
    sampler = PatchSampler([(image, label)], cfg, seed=3, augment=False)
    steps = 150
    has_fg = np.array([[bool(s.any()) for s in sampler.batch(k)["label"]] for k in range(steps)])
    assert has_fg[:, 2].all()  # forced samples always contain the lesion
    assert has_fg[:, :2].mean() < 0.08  # random ones rarely do
    assert 1 / 3 <= has_fg.mean() < 1 / 3 + 0.06


def test_foreground_oversampling_with_augmentation_keeps_binary_labels():
    image, label = _volume()
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=2, foreground_oversample=0.33)
    params_sampler = PatchSampler([(image, label)], cfg, seed=5, augment=True)
    fg = []
    for k in range(60):
        b = params_sampler.batch(k)
        assert set(torch.unique(b["label"]).tolist()) <= {0.0, 1.0}
        assert torch.isfinite(b["image"]).all()
        fg.append(bool(b["label"][1].any()))
    assert np.mean(fg) > 0.9


@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
def test_padding_when_volume_is_smaller_than_patch(pad_mode):
    values = np.arange(1, 2 * 5 * 6 + 1, dtype=np.float32).reshape(1, 2, 5, 6)
    label = np.zeros((2, 5, 6), np.uint8)
    label[1, 2, 3] = 1
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=2)
    sampler = PatchSampler([(values, label)], cfg, seed=0, augment=False, pad_mode=pad_mode)
    for k in range(5):
        b = sampler.batch(k)
        assert b["image"].shape == (2, 1, 4, 8, 8) and b["label"].shape == (2, 1, 4, 8, 8)
        for img, lab in zip(b["image"], b["label"], strict=True):
            # The whole volume is inside every patch, exactly once.
            assert lab.sum() == 1
            if pad_mode == "constant":
                inside = np.sort(img[img != 0].numpy())
                np.testing.assert_array_equal(inside, values.ravel())
                assert (img == 0).sum() == 4 * 8 * 8 - values.size
            else:
                assert set(np.unique(img.numpy())) == set(values.ravel().tolist())
            # The lesion voxel keeps its intensity (the voxel at z=1, y=2, x=3 is 1 + 30+12+3).
            assert float(img[lab > 0]) == 46.0


def test_2d_patches_from_3d_volumes_and_2d_images():
    image, label = _volume(shape=(5, 10, 12), lesion=np.s_[3, 4:6, 5:7])
    cfg = DataConfig(patch_size=(8, 8), batch_size=2, foreground_oversample=0.5)
    b = PatchSampler([(image, label)], cfg, seed=1, augment=False).batch(0)
    assert b["image"].shape == (2, 1, 8, 8)
    assert b["label"][1].sum() > 0  # the forced sample sits on the lesion's slice
    flat = [(image[:, 3], label[3])]
    assert PatchSampler(flat, cfg, seed=1, augment=False).batch(0)["label"][1].sum() == 4
    with pytest.raises(DatasetError, match="3D patch"):
        PatchSampler(flat, DataConfig(patch_size=(4, 8, 8)), seed=0).batch(0)


def test_batches_are_a_pure_function_of_seed_and_step():
    image, label = _volume()
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=2)
    a = PatchSampler([(image, label)], cfg, seed=7)
    b = PatchSampler([(image, label)], cfg, seed=7)
    later = [a.batch(k) for k in (5, 3, 9)]
    for k, batch in zip((5, 3, 9), later, strict=True):
        assert torch.equal(b.batch(k)["image"], batch["image"])
    assert not torch.equal(a.batch(5)["image"], a.batch(6)["image"])
    other = PatchSampler([(image, label)], cfg, seed=8)
    assert not torch.equal(other.batch(5)["image"], later[0]["image"])


def test_loader_same_batches_for_any_num_workers():
    image, label = _volume()
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=2)
    sampler = PatchSampler([(image, label)], cfg, seed=11)
    serial = list(make_loader(sampler, 3, 9, num_workers=0))
    parallel = list(make_loader(sampler, 3, 9, num_workers=2))
    assert len(serial) == len(parallel) == 6
    for k, (s, p) in enumerate(zip(serial, parallel, strict=True)):
        assert s["image"].shape == (2, 1, 4, 8, 8)
        assert torch.equal(s["image"], p["image"]) and torch.equal(s["label"], p["label"])
        assert torch.equal(s["image"], sampler.batch(3 + k)["image"])  # in step order


def test_sampler_errors():
    with pytest.raises(DatasetError, match="empty dataset"):
        PatchSampler([], DataConfig(), seed=0)
    image, _ = _volume()
    with pytest.raises(DatasetError, match="no label"):
        PatchSampler([(image, None)], DataConfig(patch_size=(4, 8, 8)), seed=0).batch(0)
