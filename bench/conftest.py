"""Shared benchmark fixture: a preprocessed, memory-mapped CT-like cache (format 2 of
``rdcl.data.preprocessing.preprocess``) for the loader and step benchmarks.

The cache is written directly (normalised float32 volumes with lesion blobs, as preprocessing
leaves them) so that the benchmarks need no SimpleITK: the GPU machines have none.

The scipy reference of the spatial augmentation lives with the tests
(``tests/data/sampling/_spatial_reference.py``); its folder is put on ``sys.path`` here so that
the loader benchmark can time it beside rdcl's engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from rdcl.data.preprocessing import preprocess as pp
from rdcl.data.preprocessing.preprocess import CachedDataset
from rdcl.formats.cache import CACHE_FORMAT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data" / "sampling"))

SHAPE = (80, 256, 256)
"""A small chest CT in voxels (z, y, x); real ones are larger, which only grows the cache."""


def write_cache(folder: Path, n_cases: int = 3, seed: int = 0) -> CachedDataset:
    """Write an ``n_cases`` cache of smooth z-scored volumes and their > 1.5 sd blobs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files, arrays = [], []
    for i in range(n_cases):
        name = f"case{i:03d}"
        noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 3.0)
        image = (noise / noise.std())[None].astype(np.float32)
        label = (image[0] > 1.5).astype(np.uint8)
        np.save(folder / f"{name}.image.npy", image)
        np.save(folder / f"{name}.label.npy", label)
        props = {"shape": list(SHAPE), "spacing": [2.5, 0.8, 0.8]}
        fg = pp._foreground_sample(label, seed=i)
        np.savez(folder / f"{name}.npz", props=np.array(json.dumps(props)), fg=fg)
        files.append(f"{name}.npz")
        arrays += [f"{name}.image.npy", f"{name}.label.npy"]
    stats = {"mean": 0.0, "std": 1.0, "lo": -3.0, "hi": 3.0}
    info = {
        "intensity": stats,
        "normalization": "ct",
        "window": None,
        "target_spacing": None,
        "dataset": {"name": "bench", "dim": 3, "layout": "nnunet", "lesion": None, "root": ""},
    }
    (folder / "stats.json").write_text(json.dumps(info))
    manifest = {"format": CACHE_FORMAT, "fingerprint": "bench", "files": files}
    manifest["arrays"] = arrays
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return CachedDataset(folder)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> CachedDataset:
    """The benchmark cache (3 cases of :data:`SHAPE`)."""
    return write_cache(tmp_path_factory.mktemp("bench") / "cache")
