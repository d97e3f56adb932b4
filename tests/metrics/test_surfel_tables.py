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


# Codes whose surface-distance triangle list follows no rule that generation can reproduce (see
# rdcl/metrics/tables.py): 46 list the same triangles in an irregular order, 24 split a hexagon into
# triangles of 1/8 and 3/8 (times sqrt(3)) instead of the midpoint fan's 1/4 and 1/4.
IRREGULAR_CODES = frozenset(
    {
        *(23, 27, 28, 29, 30, 31, 35, 37, 39, 44, 46, 50, 53, 54, 56, 58, 62, 67, 71, 74, 78),
        *(82, 83, 86, 87, 91, 92, 94, 98, 99, 113, 114, 116, 117, 118, 137, 138, 139, 141, 142),
        *(156, 157, 161, 163, 164, 168, 169, 172, 173, 177, 181, 184, 188, 193, 197, 199, 201),
        *(202, 205, 209, 211, 216, 218, 220, 224, 225, 226, 227, 228, 232),
    }
)


def _spacings():
    rng = np.random.default_rng(11)
    fixed = [(0.2, 0.5, 1.0), (0.3, 0.3, 0.3), *SPACINGS]
    return fixed + [tuple(np.exp(rng.uniform(np.log(0.01), np.log(10.0), 3))) for _ in range(40)]


def test_tables_bit_equal_surface_distance(deepmind):
    lt = deepmind.lookup_tables
    assert len(IRREGULAR_CODES) == 70
    regular = np.array([c not in IRREGULAR_CODES for c in range(256)])
    for spacing in _spacings():
        ours, ref = (
            corner_area_table_3d(spacing),
            lt.create_table_neighbour_code_to_surface_area(spacing),
        )
        # every code generation can order like the reference: bit-identical
        np.testing.assert_array_equal(ours[regular], ref[regular])
        # the 70 others: a different summation order or split, within 2 ulp
        np.testing.assert_allclose(ours[~regular], ref[~regular], rtol=4.5e-16, atol=0)
        np.testing.assert_array_equal(
            corner_length_table_2d(spacing[:2]),
            lt.create_table_neighbour_code_to_contour_length(spacing[:2]),
        )


@pytest.mark.skipif(not _engine.HAVE_EXTENSION, reason="rdcl._surface not built")
def test_cpp_tables_bit_equal_python():
    ext = _engine.extension()
    for spacing in _spacings():
        np.testing.assert_array_equal(
            ext.corner_area_table_3d(list(spacing)), corner_area_table_3d(spacing)
        )
        np.testing.assert_array_equal(
            ext.corner_length_table_2d(list(spacing[:2])), corner_length_table_2d(spacing[:2])
        )
