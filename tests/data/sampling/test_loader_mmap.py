"""The loader path that keeps up with a GPU: memory-mapped cache arrays, patches drawn from the
touched block only, worker processes with prefetch (issue 10)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _spatial_reference import patch_points, scipy_transformed_crop
from scipy import ndimage

from rdcl.config import DataConfig
from rdcl.data import DatasetError, PatchSampler, make_loader
from rdcl.data.datasets.layout import load_dataset
from rdcl.data.preprocessing.preprocess import CachedDataset, preprocess_dataset
from rdcl.formats.cache import CACHE_FORMAT


def test_cache_arrays_are_memory_mapped(nnunet_dir, tmp_path):
    cfg = DataConfig(patch_size=(4, 8, 8), normalization="ct")
    ds = preprocess_dataset(load_dataset(nnunet_dir), cfg, tmp_path / "cache")
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["format"] == CACHE_FORMAT
    assert sorted(manifest["arrays"]) == sorted(
        f"case{i:03d}.{a}.npy" for i in range(3) for a in ("image", "label")
    )
    image, label = ds[0]
    assert isinstance(image, np.memmap) and isinstance(label, np.memmap)
    assert not image.flags.writeable and image.dtype == np.float32 and label.dtype == np.uint8
    # a missing array file makes the cache stale: it is rebuilt, not half-read
    (tmp_path / "cache" / "case001.label.npy").unlink()
    rebuilt = preprocess_dataset(load_dataset(nnunet_dir), cfg, tmp_path / "cache")
    np.testing.assert_array_equal(rebuilt[1][1], CachedDataset(tmp_path / "cache")[1][1])


def test_version_1_cache_is_refused_in_one_line_and_rebuilt(nnunet_dir, tmp_path):
    # format 1 (one <case>.npz per case, written before issue 10) is no longer read
    cache = tmp_path / "cache"
    cache.mkdir()
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    np.savez(cache / "case000.npz", image=image, props=np.array(json.dumps({})))
    (cache / "manifest.json").write_text(
        json.dumps({"format": "rdcl-cache/1", "fingerprint": "x", "files": ["case000.npz"]})
    )
    stats = {"mean": 0.0, "std": 1.0, "lo": 0.0, "hi": 1.0}
    info = {"intensity": stats, "normalization": "ct", "dataset": {"name": "a", "dim": 3}}
    (cache / "stats.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"cache format 'rdcl-cache/1', expected 'rdcl-cache/2'"):
        CachedDataset(cache)
    # preprocessing into the same folder rebuilds it (the fingerprint names the format)
    cfg = DataConfig(patch_size=(4, 8, 8), normalization="ct")
    ds = preprocess_dataset(load_dataset(nnunet_dir), cfg, cache)
    assert json.loads((cache / "manifest.json").read_text())["format"] == CACHE_FORMAT
    assert len(ds) == 3 and isinstance(ds[0][0], np.memmap)


def _whole_volume_reference(image, label, start, patch, angle, scale, pad_mode):
    """The scipy reference as it was written before the block read: map_coordinates on the whole
    volume."""
    coords = patch_points(start, patch, angle, scale)
    mode = "nearest" if pad_mode == "edge" else "constant"
    img = np.stack([ndimage.map_coordinates(ch, coords, order=1, mode=mode) for ch in image])
    lab = ndimage.map_coordinates(label.astype(np.float32), coords, order=1, mode="constant")
    return img.reshape(image.shape[0], *patch), (lab >= 0.5).astype(np.uint8).reshape(patch)


def test_scipy_reference_reads_a_block_with_identical_results():
    rng = np.random.default_rng(0)
    for _ in range(60):
        dim = int(rng.choice([2, 3]))
        shape = tuple(int(n) for n in rng.integers(5, 30, size=dim))
        image = rng.standard_normal((2, *shape)).astype(np.float32)
        label = (rng.random(shape) > 0.6).astype(np.uint8)
        patch = tuple(int(p) for p in rng.integers(3, 25, size=dim))
        start = [int(rng.integers(-p, n)) for n, p in zip(shape, patch, strict=True)]
        angle, scale = float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(0.7, 1.4))
        pad_mode = str(rng.choice(["constant", "edge"]))
        # The scipy reference (the former "scipy" engine; transformed_crop, separable, is compared
        # with it in test_augment_separable.py).
        got = scipy_transformed_crop(
            image, label, start, patch, angle=angle, scale=scale, pad_mode=pad_mode
        )
        want = _whole_volume_reference(image, label, start, patch, angle, scale, pad_mode)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.slow
def test_worker_loader_on_the_mmapped_cache_matches_in_process(nnunet_dir, tmp_path):
    cfg = DataConfig(patch_size=(4, 8, 8), batch_size=2, normalization="ct")
    ds = preprocess_dataset(load_dataset(nnunet_dir), cfg, tmp_path / "cache")
    sampler = PatchSampler(ds, cfg, seed=1)
    inline = list(make_loader(sampler, 3, 7, num_workers=0, pin_memory=False))
    workers = list(make_loader(sampler, 3, 7, num_workers=2, pin_memory=False, prefetch=3))
    assert len(inline) == len(workers) == 4
    for a, b in zip(inline, workers, strict=True):
        for key in ("image", "label", "case"):
            assert torch.equal(a[key], b[key])
    with pytest.raises(ValueError, match="prefetch must be >= 1"):
        make_loader(sampler, 0, 1, prefetch=0)
