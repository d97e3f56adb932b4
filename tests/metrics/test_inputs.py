"""Input handling: torch tensors, label maps, validation, CUDA requests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdcl.metrics import CUDA_BUILT, _engine, dice, hausdorff, surface_dice, surface_distances


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


@pytest.mark.skipif(CUDA_BUILT, reason="this build has CUDA")
def test_cuda_request_without_build_raises():
    pred, gt = _pair()
    with pytest.raises(ImportError, match=r"without CUDA|compiled"):
        surface_distances(pred, gt, 1.0, device="cuda")


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
        for key in ("distances_gt_to_pred", "distances_pred_to_gt"):
            np.testing.assert_allclose(getattr(b, key), getattr(a, key), atol=1e-9)
    assert _engine.CUDA_BUILT
