"""Exact ties against surface-distance: the issue's two examples (HD percentile, NSD tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from rdcl.metrics import _engine, surface_distances
from rdcl.metrics.reference import surface_distances_reference
from rdcl.metrics.surface import SurfaceDistances


def _hd50_case():
    gt = np.array([[[1, 0, 0, 0, 0, 0, 1]]], bool)
    pred = np.array([[[1, 0, 1, 1, 0, 1, 1]]], bool)
    return pred, gt, (0.2, 0.5, 1.0)


def test_hd_percentile_tie_matches_surface_distance(deepmind):
    # The running area fraction lands exactly on 0.5; with tables one bit off it stepped past it.
    pred, gt, spacing = _hd50_case()
    ref = deepmind.compute_robust_hausdorff(
        deepmind.compute_surface_distances(gt, pred, spacing), 50
    )
    assert ref == 0.0
    assert surface_distances(pred, gt, spacing).hausdorff(50) == 0.0
    numpy_ref = SurfaceDistances(*surface_distances_reference(pred, gt, spacing))
    assert numpy_ref.hausdorff(50) == 0.0


def _nsd_case():
    gt = np.zeros((3, 5, 6), bool)
    for v in [(0, 3, 5), (2, 0, 0), (2, 4, 4)]:
        gt[v] = True
    pred = np.zeros_like(gt)
    pred[0, 3, 1] = True
    return pred, gt, (0.3, 0.3, 0.3), 3 * 0.3


def test_nsd_tolerance_tie_is_the_documented_difference(deepmind):
    """docs/metrics.md, "Exactness": at a distance two offsets reach exactly, the engine keeps the
    smaller float64 value (here (3*0.3)^2 -> 0.8999999999999999 against (0.3^2 + 2*0.6^2) -> 0.9);
    scipy's EDT, and so surface-distance and the numpy reference, keep the value of the point its
    feature transform chose (0.9). NSD at tau = 3 * 0.3 = 0.8999999999999999 then counts that surfel
    in rdcl's engine only; one ulp away from the tie both agree."""
    pred, gt, spacing, tau = _nsd_case()
    ref_sd = deepmind.compute_surface_distances(gt, pred, spacing)
    ref = deepmind.compute_surface_dice_at_tolerance(ref_sd, tau)
    assert ref == pytest.approx(0.46875, abs=1e-15)
    numpy_ref = SurfaceDistances(*surface_distances_reference(pred, gt, spacing))
    assert numpy_ref.surface_dice(tau) == ref
    ours = surface_distances(pred, gt, spacing)
    if _engine.HAVE_EXTENSION:
        assert ours.surface_dice(tau) == 0.5
        assert 0.8999999999999999 in ours.distances_pred_to_gt
        assert 0.9 in ref_sd["distances_pred_to_gt"]
    for t in (np.nextafter(tau, 0.0), np.nextafter(0.9, 1.0)):
        assert ours.surface_dice(t) == deepmind.compute_surface_dice_at_tolerance(ref_sd, t)
