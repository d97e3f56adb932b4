"""The generated surfel tables: hand-checked entries and equality with surface-distance's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rdcl.metrics import _engine
from rdcl.metrics.tables import corner_area_table_3d, corner_length_table_2d

SPACINGS = [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (0.37, 1.9, 3.1)]


def test_hand_entries_unit_cube():
    t = corner_area_table_3d((1.0, 1.0, 1.0))
    # One corner: a triangle through three edge midpoints, side sqrt(2)/2 -> area sqrt(3)/8.
    assert t[1] == pytest.approx(math.sqrt(3) / 8)
    # Four corners of one face (code 0b00001111): the unit square x0 = 1/2 -> area 1.
    assert t[0b00001111] == pytest.approx(1.0)
    # Full and empty neighbourhoods carry no surface; complements are equal.
    assert t[0] == 0 and t[255] == 0
    np.testing.assert_allclose(t, t[::-1])


def test_anisotropic_face_scales_with_spacing():
    t = corner_area_table_3d((2.0, 3.0, 5.0))
    # The face-parallel square normal to axis 0 spans axes 1 and 2: 3 * 5 mm^2.
    assert t[0b00001111] == pytest.approx(15.0)
    lengths = corner_length_table_2d((2.0, 3.0))
    assert lengths[0b0011] == pytest.approx(3.0)  # horizontal segment along axis 1
    assert lengths[0b0101] == pytest.approx(2.0)  # vertical segment along axis 0
    assert lengths[0b0110] == pytest.approx(2 * 0.5 * math.hypot(2, 3))  # two diagonals


@pytest.mark.parametrize("spacing", SPACINGS)
def test_tables_equal_surface_distance(deepmind, spacing):
    lt = deepmind.lookup_tables
    np.testing.assert_allclose(
        corner_area_table_3d(spacing),
        lt.create_table_neighbour_code_to_surface_area(spacing),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        corner_length_table_2d(spacing[:2]),
        lt.create_table_neighbour_code_to_contour_length(spacing[:2]),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.skipif(not _engine.HAVE_EXTENSION, reason="rdcl._surface not built")
@pytest.mark.parametrize("spacing", SPACINGS)
def test_cpp_tables_equal_python(spacing):
    ext = _engine.extension()
    np.testing.assert_allclose(
        ext.corner_area_table_3d(list(spacing)), corner_area_table_3d(spacing), atol=1e-12
    )
    np.testing.assert_allclose(
        ext.corner_length_table_2d(list(spacing[:2])),
        corner_length_table_2d(spacing[:2]),
        atol=1e-12,
    )
