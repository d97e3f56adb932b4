"""Parity: engine vs numpy reference vs google-deepmind/surface-distance (to 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest

from rdcl.metrics import _engine, surface_distances
from rdcl.metrics.reference import surface_distances_reference

KEYS = ("distances_gt_to_pred", "surfel_areas_gt", "distances_pred_to_gt", "surfel_areas_pred")


def _random_case(rng, dim):
    shape = tuple(int(s) for s in rng.integers(4, 18, dim))
    gt = rng.random(shape) < rng.uniform(0.1, 0.5)
    pred = rng.random(shape) < rng.uniform(0.1, 0.5)
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, dim))
    return pred, gt, spacing


def _assert_matches_deepmind(sd_mod, pred, gt, spacing):
    ref = sd_mod.compute_surface_distances(gt, pred, spacing)
    ours = surface_distances(pred, gt, spacing, threads=2)
    for key in KEYS:
        np.testing.assert_allclose(getattr(ours, key).sum(), ref[key].sum(), rtol=1e-12)
    for key in ("distances_gt_to_pred", "distances_pred_to_gt"):
        np.testing.assert_allclose(getattr(ours, key), ref[key], rtol=0, atol=1e-9)
    for tau in (0.0, 1.0, 2.5):
        assert ours.surface_dice(tau) == pytest.approx(
            sd_mod.compute_surface_dice_at_tolerance(ref, tau), abs=1e-9
        )
    for pct in (50, 95, 100):
        assert ours.hausdorff(pct) == pytest.approx(
            sd_mod.compute_robust_hausdorff(ref, pct), abs=1e-9
        )
    assert ours.assd(pooled=False) == pytest.approx(
        np.mean(sd_mod.compute_average_surface_distance(ref)), abs=1e-9
    )


@pytest.mark.parametrize("dim", [2, 3])
def test_random_masks_match_deepmind(deepmind, dim):
    rng = np.random.default_rng(dim)
    for _ in range(8):
        _assert_matches_deepmind(deepmind, *_random_case(rng, dim))


def test_moderate_blobs_match_deepmind(deepmind):
    z, y, x = np.ogrid[:40, :64, :64]
    gt = ((z - 20) / 12.0) ** 2 + ((y - 30) / 20.0) ** 2 + ((x - 30) / 18.0) ** 2 <= 1
    pred = ((z - 21) / 11.0) ** 2 + ((y - 33) / 19.0) ** 2 + ((x - 28) / 20.0) ** 2 <= 1
    pred |= ((z - 8) / 3.0) ** 2 + ((y - 55) / 5.0) ** 2 + ((x - 55) / 5.0) ** 2 <= 1  # far blob
    _assert_matches_deepmind(deepmind, pred, gt, (2.5, 0.8, 0.8))


@pytest.mark.skipif(not _engine.HAVE_EXTENSION, reason="rdcl._surface not built")
@pytest.mark.parametrize("boundary", ["corner", "voxel"])
@pytest.mark.parametrize("dim", [2, 3])
def test_engine_matches_reference(boundary, dim):
    rng = np.random.default_rng(10 + dim)
    ext = _engine.extension()
    for threads in (1, 2, 3):
        pred, gt, spacing = _random_case(rng, dim)
        ours = ext.surface_distances_cpu(
            pred.view(np.uint8), gt.view(np.uint8), list(spacing), boundary, threads
        )
        ref = surface_distances_reference(pred, gt, spacing, boundary)
        for a, b in zip(ours, ref, strict=True):
            assert a.shape == b.shape
        np.testing.assert_allclose(ours[0], ref[0], atol=1e-9)
        np.testing.assert_allclose(ours[2], ref[2], atol=1e-9)
        np.testing.assert_allclose(ours[1].sum(), ref[1].sum(), rtol=1e-12)


def test_voxel_boundary_counts_edge_voxels():
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True
    sd = surface_distances(gt, gt, 1.0, boundary="voxel")
    # 3x3 square: 8 boundary voxels (all but the centre), weight 1 each.
    np.testing.assert_array_equal(sd.surfel_areas_gt, np.ones(8))


def _real_masks(data_dir):
    from rdcl.data.io import read_image

    masks = []
    for name in ("lung1_label.nrrd", "lung2_label.nrrd"):
        path = data_dir / "lung_tumour_ct" / name
        if path.exists():
            arr, geom = read_image(path)
            masks.append((arr > 0, geom.spacing))
    lidc = sorted((data_dir / "lidc_nodules" / "masks").glob("*.nii.gz"))[:3]
    for path in lidc:
        arr, geom = read_image(path)
        masks.append((arr > 0, geom.spacing))
    if not masks:
        pytest.skip("no lung_tumour_ct / lidc_nodules masks found")
    return masks


@pytest.mark.realdata
def test_real_masks_match_deepmind(deepmind, data_dir):
    from scipy import ndimage

    for gt, spacing in _real_masks(data_dir):
        # A plausible prediction: the mask dilated in-plane and shifted one slice.
        pred = np.roll(ndimage.binary_dilation(gt, iterations=1), 1, axis=0)
        _assert_matches_deepmind(deepmind, pred, gt, spacing)
