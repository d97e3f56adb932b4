"""Input handling: torch tensors, label maps, validation, CUDA requests."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from rdcl.metrics import (
    CUDA_BUILT,
    _engine,
    dice,
    engine,
    hausdorff,
    surface_dice,
    surface_distances,
)


def _pair():
    gt = np.zeros((6, 10, 10), np.uint8)
    gt[1:5, 2:7, 2:7] = 1
    pred = np.zeros_like(gt)
    pred[1:5, 3:8, 2:7] = 1
    return pred, gt


def test_torch_cpu_matches_numpy():
    pred, gt = _pair()
    a = surface_distances(pred, gt, (2.0, 1.0, 1.0))
    b = surface_distances(torch.from_numpy(pred), torch.from_numpy(gt).bool(), (2.0, 1.0, 1.0))
    np.testing.assert_array_equal(a.distances_gt_to_pred, b.distances_gt_to_pred)
    assert dice(torch.from_numpy(pred), torch.from_numpy(gt)) == dice(pred, gt)


def test_label_map():
    pred, gt = _pair()
    labels_p, labels_g = pred * 3, gt * 3 + (gt == 0) * 1  # 1 = other structure everywhere else
    assert surface_dice(labels_p, labels_g, 1.0, 1.0, label=3) == surface_dice(pred, gt, 1.0, 1.0)
    with pytest.raises(ValueError, match="binary mask"):
        surface_dice(labels_p, labels_g, 1.0, 1.0)


def test_validation_errors():
    pred, gt = _pair()
    with pytest.raises(ValueError, match="same shape"):
        hausdorff(pred, gt[:-1], 1.0)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff(pred, gt, (1.0, 1.0))
    with pytest.raises(ValueError, match="boundary"):
        surface_distances(pred, gt, 1.0, boundary="mesh")
    with pytest.raises(ValueError, match="percentile"):
        hausdorff(pred, gt, 1.0, percentile=101)


def test_cuda_request_without_cuda_build_raises(monkeypatch):
    # Simulates a build without CUDA (the module's cuda_built() is False) so that the check runs
    # wherever nvcc exists too; without any compiled module the message says so.
    pred, gt = _pair()
    monkeypatch.setattr(_engine, "_ext", types.SimpleNamespace(cuda_built=lambda: False))
    with pytest.raises(ImportError, match="built without CUDA"):
        surface_distances(pred, gt, 1.0, device="cuda")
    monkeypatch.setattr(_engine, "_ext", None)
    with pytest.raises(ImportError, match=r"needs the compiled rdcl\._surface"):
        surface_distances(pred, gt, 1.0, device="cuda")
    assert _engine.engine("cuda") == "unavailable"


def test_cuda_request_with_cpu_only_torch_raises(monkeypatch):
    pred, gt = _pair()
    monkeypatch.setattr(_engine, "_ext", types.SimpleNamespace(cuda_built=lambda: True))
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(ImportError, match="torch built with CUDA"):
        surface_distances(pred, gt, 1.0, device="cuda")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ImportError, match="visible CUDA GPU"):
        surface_distances(pred, gt, 1.0, device="cuda:0")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:1", "cuda:"])
def test_bad_device_names(device):
    pred, gt = _pair()
    with pytest.raises(ValueError, match="expected device"):
        surface_distances(pred, gt, 1.0, device=device)


@pytest.mark.parametrize(
    "spacing", [np.float32(2.0), np.int64(2), np.array(2.0), np.float64(2.0), torch.tensor(2.0)]
)
def test_spacing_scalars_broadcast(spacing):
    pred, gt = _pair()
    ref = surface_distances(pred, gt, (2.0, 2.0, 2.0))
    ours = surface_distances(pred, gt, spacing)
    np.testing.assert_array_equal(ours.distances_gt_to_pred, ref.distances_gt_to_pred)
    np.testing.assert_array_equal(ours.surfel_areas_pred, ref.surfel_areas_pred)


def test_spacing_arrays_and_bad_spacings():
    pred, gt = _pair()
    ref = surface_distances(pred, gt, (2.0, 1.0, 0.5))
    for sp in (np.array([2.0, 1.0, 0.5], np.float32), torch.tensor([2.0, 1.0, 0.5])):
        np.testing.assert_array_equal(
            surface_distances(pred, gt, sp).surfel_areas_gt, ref.surfel_areas_gt
        )
    for bad, match in (
        ("1.0", "numbers in mm"),
        (np.ones((3, 1)), "found shape"),
        ([1.0, None, 1.0], "finite positive|numbers in mm"),
        ([1.0, -1.0, 1.0], "finite positive"),
        (np.array([1.0, np.inf, 1.0]), "finite positive"),
    ):
        with pytest.raises(ValueError, match=match):
            surface_distances(pred, gt, bad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.int16])
def test_torch_cpu_dtypes(dtype):
    pred, gt = _pair()
    ref = surface_distances(pred, gt, (2.0, 1.0, 1.0))
    ours = surface_distances(
        torch.from_numpy(pred).to(dtype), torch.from_numpy(gt).to(dtype), (2.0, 1.0, 1.0)
    )
    np.testing.assert_array_equal(ours.distances_pred_to_gt, ref.distances_pred_to_gt)
    np.testing.assert_array_equal(ours.surfel_areas_pred, ref.surfel_areas_pred)
    assert dice(torch.from_numpy(pred).to(dtype), gt) == dice(pred, gt)


def test_non_numeric_masks_and_threads_refused():
    pred, gt = _pair()
    with pytest.raises(ValueError, match="dtype <U"):
        surface_distances(pred.astype(str), gt, 1.0)
    with pytest.raises(ValueError, match="real-valued"):
        surface_distances(pred.astype(complex), gt, 1.0)
    for threads in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="threads"):
            surface_distances(pred, gt, 1.0, threads=threads)


@pytest.mark.cuda
@pytest.mark.skipif(not (CUDA_BUILT and torch.cuda.is_available()), reason="needs a CUDA GPU")
@pytest.mark.parametrize("boundary", ["corner", "voxel"])
def test_cuda_matches_cpu(boundary):
    rng = np.random.default_rng(5)
    for shape, sp in (((20, 33, 17), (2.5, 0.8, 0.7)), ((40, 31), (0.9, 1.3))):
        gt = rng.random(shape) < 0.3
        pred = rng.random(shape) < 0.3
        a = surface_distances(pred, gt, sp, boundary=boundary)
        b = surface_distances(
            torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda(), sp, boundary=boundary
        )
        assert engine("cuda") == "cuda"
        for key in ("distances_gt_to_pred", "distances_pred_to_gt"):
            np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=0, atol=1e-12)
        # areas: the same per surface point (multiset per direction); where both engines give
        # bit-equal distances, the same order too (both sort by (distance, area))
        for dkey, akey in (
            ("distances_gt_to_pred", "surfel_areas_gt"),
            ("distances_pred_to_gt", "surfel_areas_pred"),
        ):
            assert getattr(b, akey).shape == getattr(a, akey).shape
            np.testing.assert_array_equal(np.sort(getattr(b, akey)), np.sort(getattr(a, akey)))
            if np.array_equal(getattr(b, dkey), getattr(a, dkey)):
                np.testing.assert_array_equal(getattr(b, akey), getattr(a, akey))
        for tau in (0.0, 1.0, 2.0):
            assert b.surface_dice(tau) == pytest.approx(a.surface_dice(tau), abs=1e-12)
        for pct in (50, 95, 100):
            assert b.hausdorff(pct) == pytest.approx(a.hausdorff(pct), abs=1e-12)
        assert b.assd() == pytest.approx(a.assd(), rel=1e-12)
