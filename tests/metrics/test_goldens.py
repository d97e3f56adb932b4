"""Hand-derivable geometric goldens, each with its derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rdcl.metrics import assd, dice, hausdorff, surface_dice, surface_distances


def _two_voxels():
    # Two single voxels one apart along axis 0 under spacing (2, 1, 1): centres 2 mm apart.
    gt = np.zeros((3, 3, 3), bool)
    pred = np.zeros((3, 3, 3), bool)
    gt[0, 1, 1] = True
    pred[1, 1, 1] = True
    return pred, gt


def test_two_voxels_two_mm_apart():
    pred, gt = _two_voxels()
    sd = surface_distances(pred, gt, (2, 1, 1))
    # Each voxel's surface is its 8 corners (all corner codes have exactly one inside voxel).
    # The corners of both cubes are on corner planes z = 0, 1 (gt) and z = 1, 2 (pred) in voxel
    # units: 4 gt corners coincide with 4 pred corners (distance 0) and the other 4 are one plane,
    # i.e. 2 mm, away.
    np.testing.assert_array_equal(sd.distances_gt_to_pred, [0, 0, 0, 0, 2, 2, 2, 2])
    np.testing.assert_array_equal(sd.distances_pred_to_gt, [0, 0, 0, 0, 2, 2, 2, 2])
    # Each corner triangle has area vector (1/8)(s1 s2, s0 s2, s0 s1) = (1/8)(1, 2, 2): |.| = 3/8.
    np.testing.assert_allclose(sd.surfel_areas_gt, np.full(8, 3 / 8))
    # HD95: cumulative area fractions 1/8 .. 1; the first >= 0.95 is the last -> 2 mm.
    assert hausdorff(pred, gt, (2, 1, 1)) == 2.0
    # Median (50 %): the 4th surfel reaches exactly 0.5 -> distance 0.
    assert hausdorff(pred, gt, (2, 1, 1), percentile=50) == 0.0
    # NSD: half of each surface is within 1 mm, all of it within 2 mm (d <= tau inclusive).
    assert surface_dice(pred, gt, (2, 1, 1), 1.0) == pytest.approx(0.5)
    assert surface_dice(pred, gt, (2, 1, 1), 2.0) == 1.0
    np.testing.assert_allclose(surface_dice(pred, gt, (2, 1, 1), [1.0, 1.999, 2.0]), [0.5, 0.5, 1])
    assert assd(pred, gt, (2, 1, 1)) == pytest.approx(1.0)
    assert dice(pred, gt) == 0.0


def test_shifted_cubes():
    gt = np.zeros((12, 12, 12), bool)
    gt[2:8, 2:8, 2:8] = True
    pred = np.roll(gt, 2, axis=2)  # shifted 2 voxels = 2 mm along x at spacing 1
    sd = surface_distances(pred, gt, 1.0)
    # Distance 2 mm at most (the far faces), 0 for points lying on the other surface.
    assert sd.distances_gt_to_pred.max() == 2.0
    assert hausdorff(pred, gt, 1.0, percentile=100) == 2.0
    # Area of the 6-cube's surface: corner points on the cube's boundary [0, 6]^3 are
    # 6 faces x 5 x 5 face points (4 inside voxels: a unit square, 1 mm^2), 12 edges x 5 edge points
    # (2 inside voxels: a diagonal rectangle, sqrt(2)/2) and 8 vertices (one voxel: sqrt(3)/8).
    expected = 150 * 1.0 + 60 * math.sqrt(2) / 2 + 8 * math.sqrt(3) / 8
    assert sd.surfel_areas_gt.sum() == pytest.approx(expected, rel=1e-12)
    # Dice of two 6-cubes overlapping in 6x6x4: 2 * 144 / 432 = 2/3.
    assert dice(pred, gt) == pytest.approx(2 / 3)


def test_sphere_area_vs_analytic():
    r = 12.0
    z, y, x = np.ogrid[-16:17, -16:17, -16:17]
    ball = (z**2 + y**2 + x**2) <= r**2
    sd = surface_distances(ball, ball, 1.0)
    # The surface runs along the outer faces of the voxel cubes (corner grid), so the voxelised ball
    # of centres within r reaches r + 1/2 voxel: area about 4 pi (r + 1/2)^2, within 3 %.
    assert sd.surfel_areas_gt.sum() == pytest.approx(4 * math.pi * (r + 0.5) ** 2, rel=0.03)
    assert sd.distances_gt_to_pred.max() == 0.0
    assert surface_dice(ball, ball, 1.0, 0.0) == 1.0


def test_anisotropic_spacing_scales_distances():
    gt = np.zeros((8, 8, 8), bool)
    gt[2:5, 2:5, 2:5] = True
    pred = np.roll(gt, 1, axis=0)
    # Shift by one voxel along axis 0: the far faces are 1 voxel apart -> s0 mm.
    assert hausdorff(pred, gt, (3.0, 1.0, 1.0), percentile=100) == 3.0
    assert hausdorff(pred, gt, (0.5, 1.0, 1.0), percentile=100) == 0.5


def test_border_touching_objects():
    # Objects touching the array border: corners outside the array still count (zero padding).
    gt = np.zeros((4, 5, 5), bool)
    gt[:, :, :2] = True
    pred = np.zeros_like(gt)
    pred[:, :, :3] = True
    sd = surface_distances(pred, gt, 1.0)
    # The x = 2 face of gt is 1 mm from pred's x = 3 face; the other faces coincide.
    assert sd.distances_gt_to_pred.max() == 1.0
    assert sd.distances_pred_to_gt.max() == 1.0


def test_single_voxel_2d():
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    sd = surface_distances(gt, gt, (1.0, 2.0))
    # 4 corners, each a diagonal segment 0.5 * hypot(1, 2) long.
    np.testing.assert_allclose(sd.surfel_areas_gt, np.full(4, 0.5 * math.hypot(1, 2)))
    assert surface_dice(gt, gt, (1.0, 2.0), 0.0) == 1.0


def test_empty_masks():
    z = np.zeros((6, 6, 6), bool)
    one = z.copy()
    one[2:4, 2:4, 2:4] = True
    # Both empty: DSC NaN, NSD NaN, HD inf.
    assert math.isnan(dice(z, z)) and math.isnan(surface_dice(z, z, 1.0, 1.0))
    assert hausdorff(z, z, 1.0) == math.inf and assd(z, z, 1.0) == math.inf
    # Empty prediction / empty gt: DSC 0, NSD 0, HD inf, distances inf.
    for pred, gt in ((z, one), (one, z)):
        assert dice(pred, gt) == 0.0
        assert surface_dice(pred, gt, 1.0, 3.0) == 0.0
        assert hausdorff(pred, gt, 1.0) == math.inf
        assert assd(pred, gt, 1.0) == math.inf
    sd = surface_distances(z, one, 1.0)
    assert sd.pred_empty and np.all(np.isinf(sd.distances_gt_to_pred))
