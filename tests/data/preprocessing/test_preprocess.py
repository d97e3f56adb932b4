from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rdcl.config import DataConfig
from rdcl.data.datasets.layout import DatasetError, load_case, load_dataset
from rdcl.data.io import Geometry, write_image
from rdcl.data.preprocessing import preprocess as pp
from rdcl.data.preprocessing.preprocess import (
    CachedDataset,
    IntensityStats,
    compute_intensity_stats,
    normalize,
    preprocess_case,
    preprocess_dataset,
    restore,
)
from rdcl.data.preprocessing.resample import target_shape


def test_intensity_stats_and_ct_normalisation_by_hand():
    image = np.array([[0.0, 10.0, 20.0], [30.0, 40.0, 1000.0]])
    label = np.array([[0, 1, 1], [1, 1, 0]])
    # Foreground voxels 10, 20, 30, 40 (the 0 and 1000 outside are ignored; an unlabelled case
    # contributes nothing). np.percentile interpolates linearly between sorted values:
    # 0.5 % -> index 0.015 -> 10 + 0.015 * 10 = 10.15; 99.5 % -> index 2.985 -> 39.85.
    # mean 25, population std sqrt((15^2 + 5^2 + 5^2 + 15^2) / 4) = sqrt(125).
    stats = compute_intensity_stats([(image, label), (np.full((2, 2), 500.0), None)])
    assert stats.lo == pytest.approx(10.15)
    assert stats.hi == pytest.approx(39.85)
    assert stats.mean == pytest.approx(25.0)
    assert stats.std == pytest.approx(np.sqrt(125.0))
    x = normalize(np.array([0.0, 10.0, 25.0, 45.0]), "ct", stats=stats)
    # clip to [10.15, 39.85], then (x - 25) / sqrt(125).
    expected = (np.array([10.15, 10.15, 25.0, 39.85]) - 25.0) / np.sqrt(125.0)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert x.dtype == np.float32
    assert IntensityStats.from_dict(stats.to_dict()) == stats


def test_window_and_zscore():
    x = normalize(
        np.array([-2000.0, -1250.0, -500.0, 250.0, 1000.0]), "window", window=(-1250.0, 250.0)
    )
    np.testing.assert_allclose(x, [0.0, 0.0, 0.5, 1.0, 1.0])
    z = normalize(np.array([1.0, 2.0, 3.0, 4.0]), "zscore")
    np.testing.assert_allclose(z, (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25), rtol=1e-6)
    with pytest.raises(ValueError, match="needs IntensityStats"):
        normalize(np.ones(3), "ct")


def test_target_shape():
    assert target_shape((10, 20, 30), (2.5, 0.8, 0.7), (5.0, 1.6, 1.4)) == (5, 10, 15)
    # A 2D target spacing on a 3D volume resamples in-plane only.
    assert target_shape((10, 20, 30), (2.5, 0.8, 0.7), (1.6, 1.4)) == (10, 10, 15)
    assert target_shape((10, 20), (1.0, 1.0), None) == (10, 20)
    with pytest.raises(ValueError, match=r"target spacing \(0\.0, 1\.0\).*positive"):
        target_shape((10, 20), (1.0, 1.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="does not fit"):
        target_shape((10, 20), (1.0, 1.0), (1.0, 1.0, 1.0, 1.0))


def test_resample_and_restore_round_trip():
    geom = Geometry.default(3, (2.5, 0.8, 0.7))
    image = np.full((6, 8, 10), -500.0)
    label = np.zeros((6, 8, 10), np.uint8)
    label[1:5, 2:7, 2:9] = 1
    cfg = DataConfig(normalization="window", target_spacing=(1.25, 1.6, 1.4))
    x, y, props = preprocess_case(image, geom, cfg, None, label)
    assert x.shape == (1, 12, 4, 5) and y.shape == (12, 4, 5)
    # A constant image stays constant through the spline: -500 HU -> 0.5 in the window.
    np.testing.assert_allclose(x, 0.5, atol=1e-5)
    assert set(np.unique(y)) == {0, 1}
    back = restore(y, props)
    assert back.shape == (6, 8, 10) and back.dtype == np.uint8
    dice = 2 * np.sum(back & label) / (back.sum() + label.sum())
    assert dice > 0.85
    probs = np.stack([1.0 - y, y]).astype(np.float32)
    assert restore(probs, props).shape == (2, 6, 8, 10)
    with pytest.raises(ValueError, match="does not match the preprocessed shape"):
        restore(np.zeros((6, 8, 10), np.float32), props)


def test_no_resampling_is_identity():
    geom = Geometry.default(2)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(7, 9))
    label = (image > 128).astype(np.uint8)
    x, y, props = preprocess_case(
        image, geom, DataConfig(normalization="window"), None, label, window=(0.0, 255.0)
    )
    np.testing.assert_allclose(x[0], image / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(restore(y, props), label)


def test_preprocess_dataset_values_and_cache_reuse(nnunet_dir, tmp_path, monkeypatch):
    spec = load_dataset(nnunet_dir)
    cfg = DataConfig(patch_size=(4, 8, 8), normalization="ct")
    cache = tmp_path / "cache"
    ds = preprocess_dataset(spec, cfg, cache)
    raw = [load_case(c) for c in spec.cases]
    expected_stats = compute_intensity_stats((im, lab) for im, lab, _ in raw)
    assert ds.stats == expected_stats
    assert len(ds) == 3 and ds.names == ["case000", "case001", "case002"] and ds.dim == 3
    image, label = ds[1]
    assert image.shape == (1, 6, 8, 10) and image.dtype == np.float32
    np.testing.assert_allclose(
        image[0], normalize(raw[1][0], "ct", stats=expected_stats), rtol=1e-6
    )
    np.testing.assert_array_equal(label, raw[1][1])
    assert len(ds.foreground(1)) == int(raw[1][1].sum())
    info = json.loads((cache / "stats.json").read_text())
    assert info["normalization"] == "ct" and info["dataset"]["dim"] == 3
    assert ds.window is None
    assert not list(cache.glob(".*"))  # no temporary file left

    # Same inputs: nothing is re-read.
    def boom(case):
        raise AssertionError(f"raw file re-read: {case.image}")

    monkeypatch.setattr(pp, "load_case", boom)
    again = preprocess_dataset(spec, cfg, cache)
    np.testing.assert_array_equal(again[1][0], image)
    assert CachedDataset.load(cache).stats == expected_stats
    # Changed settings or inputs: rebuilt.
    with pytest.raises(AssertionError, match="re-read"):
        preprocess_dataset(spec, dataclasses.replace(cfg, target_spacing=(5.0, 1.6, 1.4)), cache)
    monkeypatch.undo()
    lab = np.zeros((6, 8, 10), np.uint8)
    lab[0, 0, 0:4] = 1
    write_image(
        lab,
        Geometry(
            spacing=(2.5, 0.8, 0.7),
            origin=(-10.0, 20.5, 3.25),
            direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
        ),
        nnunet_dir / "labelsTr" / "case001.nii.gz",
        overwrite=True,
    )
    rebuilt = preprocess_dataset(spec, cfg, cache)
    assert int(rebuilt[1][1].sum()) == 4


def test_window_dataset_keeps_case_windows(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "masks").mkdir()
    img = rng.integers(0, 256, size=(6, 6)).astype(np.uint8)
    write_image(img, Geometry.default(2), tmp_path / "ds" / "images" / "a.png")
    write_image(
        (img > 100).astype(np.uint8) * 255, Geometry.default(2), tmp_path / "ds" / "masks" / "a.png"
    )
    # The config says "ct" with an HU window, but PNGs are already windowed: data wins.
    ds = preprocess_dataset(load_dataset(tmp_path / "ds"), DataConfig(), tmp_path / "c")
    assert ds.normalization == "window" and ds.window == (0.0, 255.0)
    np.testing.assert_allclose(ds[0][0][0], img / 255.0, rtol=1e-6)


def test_missing_cache_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no valid preprocessed cache"):
        CachedDataset.load(tmp_path)


@pytest.mark.parametrize("window", [(250.0, -1250.0), (0.0, 0.0)])
def test_normalize_rejects_an_empty_or_inverted_window(window):
    with pytest.raises(ValueError, match=r"low < high"):
        normalize(np.arange(6.0).reshape(2, 3), "window", window=window)
