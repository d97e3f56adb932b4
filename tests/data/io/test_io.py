from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from rdcl.data.io import (
    Geometry,
    ImageReadError,
    preserve_locale,
    read_image,
    strip_suffix,
    write_image,
)


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


def _write_dicom_series(folder, volume, spacing_zyx, origin_xyz, *, series=42, prefix="slice"):
    """One CT slice per file with the tags GDCM needs to sort the series by position."""
    import SimpleITK as sitk

    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # keep our series UID instead of a new one per file
    uid = f"1.2.826.0.1.3680043.2.1125.1.{series}"
    dz, dy, dx = spacing_zyx
    for k, plane in enumerate(volume):
        img = sitk.GetImageFromArray(plane[None])
        img.SetSpacing((dx, dy, dz))
        img.SetOrigin((origin_xyz[0], origin_xyz[1], origin_xyz[2] + k * dz))
        tags = {
            "0008|0060": "CT",
            "0020|000d": uid + ".1",
            "0020|000e": uid + ".2",
            "0020|0013": str(k + 1),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(
                f"{v:.4f}" for v in (origin_xyz[0], origin_xyz[1], origin_xyz[2] + k * dz)
            ),
            "0028|0030": f"{dy:.4f}\\{dx:.4f}",
            "0018|0050": f"{dz:.4f}",
        }
        for key, value in tags.items():
            img.SetMetaData(key, value)
        # Slices written in reverse order: the reader must sort them by position, not by name.
        writer.SetFileName(str(folder / f"{prefix}_{len(volume) - k:03d}.dcm"))
        with preserve_locale():  # GDCM's writer resets the process locale to "C"
            writer.Execute(img)


def test_dicom_series_folder(tmp_path):
    rng = np.random.default_rng(3)
    vol = rng.integers(-1000, 1000, size=(4, 6, 5)).astype(np.int16)
    _write_dicom_series(tmp_path / "series", vol, (2.0, 0.75, 0.5), (-5.0, 10.0, 30.0))
    arr, geom = read_image(tmp_path / "series")
    assert arr.shape == (4, 6, 5)  # (z, y, x)
    np.testing.assert_array_equal(arr, vol)
    assert geom.spacing == pytest.approx((2.0, 0.75, 0.5), abs=1e-4)
    assert geom.origin == pytest.approx((-5.0, 10.0, 30.0), abs=1e-4)


def test_folder_with_two_series_is_refused(tmp_path):
    # A clinical export folder often holds a scout and the axial series side by side: reading
    # whichever series GDCM lists first would silently segment the wrong images.
    vol = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    _write_dicom_series(tmp_path / "s", vol, (2.0, 0.75, 0.5), (0.0, 0.0, 0.0))
    _write_dicom_series(
        tmp_path / "s", vol[:2], (5.0, 1.0, 1.0), (0.0, 0.0, 0.0), series=43, prefix="b"
    )
    with pytest.raises(ImageReadError, match=r"expected one DICOM series.*found 2"):
        read_image(tmp_path / "s")


def test_empty_folder_is_not_a_series(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path / "empty")


def test_4d_image_rejected(tmp_path):
    import SimpleITK as sitk

    p = tmp_path / "four.nii.gz"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False), str(p)
    )
    with pytest.raises(ImageReadError, match="2D or 3D"):
        read_image(p)


def test_preserve_locale_restores_after_a_locale_reset():
    import locale

    before = locale.setlocale(locale.LC_ALL)
    with preserve_locale():
        locale.setlocale(locale.LC_ALL, "C")  # what GDCM's DICOM writer does
    assert locale.setlocale(locale.LC_ALL) == before


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask_022):
    # Atomic writes go through mkstemp (mode 0600); the final file must be readable by group and
    # others like any new file under umask 022 (0644), e.g. masks handed to a PACS export user.
    out = tmp_path / "mask.nii.gz"
    write_image(np.ones((3, 4, 5), np.uint8), Geometry.default(3), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    from rdcl.formats.cache import write_json
    from rdcl.fsutil import write_text_atomic
    from rdcl.metrics.evaluate import _write_csv

    write_json(tmp_path / "a.json", {"a": 1})
    row = {"case": "c", "dsc": 1.0, "nsd": 1.0, "hd95": 0.0, "assd": 0.0}
    _write_csv([row], tmp_path / "a.csv")
    write_text_atomic(tmp_path / "a.md", "# a")
    for name in ("a.json", "a.csv", "a.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_two_file_formats_keep_their_data_file_name(tmp_path, suffix):
    # A header + data pair written through a temp name used to reference a hidden
    # .tmp-XXXX.raw data file, and every overwrite leaked another one.
    vol = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    out = tmp_path / f"mask{suffix}"
    write_image(vol, Geometry.default(3, (2.0, 1.0, 0.5)), out)
    write_image(vol + 1, Geometry.default(3, (2.0, 1.0, 0.5)), out, overwrite=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([out.name, "mask.raw"]), names
    assert "mask.raw" in out.read_text(errors="replace")
    arr, geom = read_image(out)
    np.testing.assert_array_equal(arr, vol + 1)
    assert geom.spacing == (2.0, 1.0, 0.5)


def test_grey_png_with_an_opaque_alpha_channel_reads_as_grey(tmp_path):
    # Viewers often save grey slices and masks as RGBA with alpha 255 everywhere;
    # the alpha channel used to count as a "differing channel" and the file was refused.
    import SimpleITK as sitk

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    opaque = np.full_like(grey, 255)
    rgba = np.stack((grey, grey, grey, opaque), -1)
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), tmp_path / "rgba.png")
    arr, geom = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(arr, grey)
    assert geom.dim == 2
    alpha = opaque.copy()
    alpha[0, 0] = 0  # real transparency: not a grey image
    rgba = np.stack((grey, grey, grey, alpha), -1)
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="single-channel"):
        read_image(tmp_path / "t.png")
