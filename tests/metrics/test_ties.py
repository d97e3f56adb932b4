"""Exact ties: what rdcl returns and why, and that surface-distance returns a tie-side value (its
last bits depend on the CPU's BLAS kernel) - the HD percentile and NSD tolerance examples."""

from __future__ import annotations

import numpy as np
import pytest

from rdcl.metrics import _engine, surface_distances
from rdcl.metrics.reference import surface_distances_reference
from rdcl.metrics.surface import SurfaceDistances

# Ratios of area sums against surface-distance: its areas are within 4 ulp of rdcl's, so a ratio
# within about 8 ulp (2**-52 each); 2e-15 states that.
RTOL_REFERENCE = 2e-15


def _hd50_case():
    gt = np.array([[[1, 0, 0, 0, 0, 0, 1]]], bool)
    pred = np.array([[[1, 0, 1, 1, 0, 1, 1]]], bool)
    return pred, gt, (0.2, 0.5, 1.0)


def test_hd_percentile_tie(deepmind):
    """16 of pred's 32 surfels lie on gt's surface (distance 0) and carry exactly half of pred's
    area (the same 12 small and 4 large areas as the other 16, which are 1 and 2 mm away), so HD50
    is a tie between 0 and 1 mm. The rule takes the first distance whose running area fraction
    reaches 0.5. rdcl's areas come from its exact, CPU-independent tables, and with them the
    float64 fraction at the 16th surfel is exactly 0.5: rdcl answers 0.0 on every machine (pinned
    here step by step). surface-distance's areas come from a BLAS dot whose last bit depends on the
    CPU's kernel: it answers 0.0 where that dot rounds like rdcl's tables (OpenBLAS's AVX-512
    kernel) and 1.0 where the fraction lands one ulp below 0.5 (its AVX2 and baseline kernels)."""
    pred, gt, spacing = _hd50_case()
    ours = surface_distances(pred, gt, spacing)
    areas = ours.surfel_areas_pred
    assert areas.size == 32
    np.testing.assert_array_equal(np.sort(areas[:16]), np.sort(areas[16:]))
    assert (ours.distances_pred_to_gt[:16] == 0).all() and (
        ours.distances_pred_to_gt[16:] > 0
    ).all()
    assert (np.cumsum(areas) / np.sum(areas))[15] == 0.5
    assert ours.hausdorff(50) == 0.0
    # rdcl's numpy reference uses the same tables: the same exact answer.
    numpy_ref = SurfaceDistances(*surface_distances_reference(pred, gt, spacing))
    assert numpy_ref.hausdorff(50) == 0.0
    ref = deepmind.compute_robust_hausdorff(
        deepmind.compute_surface_distances(gt, pred, spacing), 50
    )
    assert ref in (0.0, 1.0)  # one of the two tie-side values


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
    # References within a few ulp: surface-distance's surfel areas depend on the CPU's BLAS kernel
    # (tests/metrics/test_surfel_tables.py); a ratio of their sums moves by a few ulp at most.
    assert ref == pytest.approx(0.46875, rel=RTOL_REFERENCE, abs=0)
    numpy_ref = SurfaceDistances(*surface_distances_reference(pred, gt, spacing))
    assert numpy_ref.surface_dice(tau) == pytest.approx(0.46875, rel=RTOL_REFERENCE, abs=0)
    ours = surface_distances(pred, gt, spacing)
    if _engine.HAVE_EXTENSION:
        assert ours.surface_dice(tau) == 0.5
        assert 0.8999999999999999 in ours.distances_pred_to_gt
        assert 0.9 in ref_sd["distances_pred_to_gt"]
    for t in (np.nextafter(tau, 0.0), np.nextafter(0.9, 1.0)):
        expected = deepmind.compute_surface_dice_at_tolerance(ref_sd, t)
        assert ours.surface_dice(t) == pytest.approx(expected, rel=RTOL_REFERENCE, abs=0)
