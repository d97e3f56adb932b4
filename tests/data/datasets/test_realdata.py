"""Smoke tests on the real CT data in ``<repo>/../shared/data`` (skipped where it is absent)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rdcl.config import DataConfig
from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.preprocessing.preprocess import preprocess_dataset
from rdcl.data.sampling.sampler import PatchSampler

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
pytestmark = pytest.mark.realdata


def _need(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (only shipped beside the project)")
    return path


def _subset(spec, n):
    return dataclasses.replace(spec, cases=spec.cases[:n])


def test_covid19_ct100_png_slices(tmp_path):
    spec = load_dataset(_need("covid19_ct100"))
    assert spec.layout == "paired" and spec.dim == 2 and len(spec.cases) == 80
    assert spec.normalization == "window" and spec.cases[0].window == (0.0, 255.0)
    image, label, _ = load_case(spec.cases[0])
    assert image.shape == (512, 512) and set(np.unique(label)) == {0, 1}
    cfg = DataConfig(patch_size=(64, 64), batch_size=3, normalization="ct")
    ds = preprocess_dataset(_subset(spec, 4), cfg, tmp_path / "cache")
    assert ds.normalization == "window"
    np.testing.assert_allclose(ds[0][0][0], image / 255.0, rtol=1e-6)
    batch = PatchSampler(ds, cfg, seed=0).batch(0)
    assert batch["image"].shape == (3, 1, 64, 64)
    assert batch["label"][2].sum() > 0  # the forced foreground sample


def test_msd_lung_patches_npz(tmp_path):
    root = _need("msd_lung_patches")
    spec = load_dataset(root)
    # val_patches.npz trains; test_patches.npz (130 more) is the held-out split.
    assert spec.layout == "npz" and spec.dim == 2 and len(spec.cases) == 130
    assert len(load_dataset(root, split="test").cases) == 130
    cfg = DataConfig(patch_size=(48, 48), batch_size=2)
    ds = preprocess_dataset(_subset(spec, 8), cfg, tmp_path / "cache")
    raw, label, _ = load_case(spec.cases[3])
    # Already normalised to [0, 1]: the window (0, 1) leaves the values unchanged.
    np.testing.assert_allclose(ds[3][0][0], raw, rtol=1e-6)
    np.testing.assert_array_equal(ds[3][1], label)
    assert PatchSampler(ds, cfg, seed=0).batch(1)["image"].shape == (2, 1, 48, 48)


def test_lidc_nodules_nifti(tmp_path):
    spec = load_dataset(_need("lidc_nodules"))
    assert spec.layout == "paired" and spec.dim == 3 and len(spec.cases) >= 900
    cfg = DataConfig(patch_size=(8, 32, 32), batch_size=2, target_spacing=(2.5, 0.7, 0.7))
    ds = preprocess_dataset(_subset(spec, 5), cfg, tmp_path / "cache")
    # Nodules are soft tissue: the foreground mean lies well above lung parenchyma (-850 HU).
    assert -600.0 < ds.stats.mean < 200.0 and ds.stats.lo < ds.stats.hi
    batch = PatchSampler(ds, cfg, seed=0).batch(0)
    # The crops are only 3-6 slices deep: the 8-slice patch is padded.
    assert batch["image"].shape == (2, 1, 8, 32, 32)
    assert batch["label"][1].sum() > 0
