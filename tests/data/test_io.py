from __future__ import annotations

import numpy as np
import pytest

from rdcl.data.io import Geometry, ImageReadError, read_image, strip_suffix, write_image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_3d_geometry_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 400, size=(5, 7, 9)).astype(np.int16)
    geom = Geometry(
        spacing=(2.5, 0.8, 0.7),
        origin=(-10.0, 20.5, 3.25),
        direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    )
    p = tmp_path / f"img{suffix}"
    write_image(arr, geom, p)
    back, g2 = read_image(p)
    assert back.shape == (5, 7, 9)  # (z, y, x) preserved
    np.testing.assert_array_equal(back, arr)
    assert g2.matches(geom, atol=1e-6)
    assert g2.spacing == pytest.approx((2.5, 0.8, 0.7))


def test_2d_png_round_trip(tmp_path):
    arr = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
    p = tmp_path / "slice.png"
    write_image(arr, Geometry.default(2), p)
    back, g = read_image(p)
    assert back.shape == (12, 10)
    np.testing.assert_array_equal(back, arr)
    assert g.dim == 2


def test_write_refuses_overwrite(tmp_path):
    p = tmp_path / "a.nii.gz"
    write_image(np.zeros((2, 3, 4), np.uint8), Geometry.default(3), p)
    with pytest.raises(FileExistsError):
        write_image(np.ones((2, 3, 4), np.uint8), Geometry.default(3), p)
    assert read_image(p)[0].max() == 0  # untouched
    write_image(np.ones((2, 3, 4), np.uint8), Geometry.default(3), p, overwrite=True)
    assert read_image(p)[0].max() == 1


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(bad)


def test_strip_suffix():
    assert strip_suffix("a/case_0000.nii.gz") == "case_0000"
    assert strip_suffix("lung1_image.nrrd") == "lung1_image"
