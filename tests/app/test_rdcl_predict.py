"""The C++ app rdcl_predict against the same TorchScript run from Python on SimpleITK's image.

Masks must be equal, and the output's geometry (size, spacing, origin, direction) must be the
input's as SimpleITK reads it, for .nii and .nii.gz, each datatype, scl_slope/scl_inter, big-endian
files, metre units, 2D images and the real chest CT.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import SHARED, AppBuild
from nifti_bytes import DTYPES, header_for, nifti_bytes
from tiny_model import (
    BoolMaskPredictor,
    ForwardOnlyPredictor,
    VolumeOnlyPredictor,
    save_tiny_model,
)

CHEST_CT = SHARED / "chest_ct" / "chest_ct.nii.gz"


def run_app(app: AppBuild, *args: object) -> subprocess.CompletedProcess:
    """Run rdcl_predict with ``args``; return the completed process (text output)."""
    return subprocess.run(
        [str(app.predict), *map(str, args)], capture_output=True, text=True, timeout=600
    )


def python_reference(model: Path, image: Path, method: str = "forward") -> np.ndarray:
    """The TorchScript model run from Python on the image as SimpleITK reads it."""
    img = sitk.ReadImage(str(image))
    arr = torch.from_numpy(sitk.GetArrayFromImage(img).astype(np.float32))
    spacing = torch.tensor(img.GetSpacing()[::-1], dtype=torch.float64)
    module = torch.jit.load(str(model))
    with torch.inference_mode():
        return getattr(module, method)(arr, spacing).numpy()


def assert_same_geometry(a: Path, b: Path) -> None:
    """Size, spacing, origin and direction equal as SimpleITK reads them."""
    ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert ia.GetSize() == ib.GetSize()
    assert ia.GetSpacing() == ib.GetSpacing()
    assert ia.GetOrigin() == ib.GetOrigin()
    assert ia.GetDirection() == ib.GetDirection()


def check_app(app: AppBuild, model: Path, image: Path, out: Path) -> np.ndarray:
    """Run the app on ``image``; assert mask and geometry agree with Python; return the mask."""
    res = run_app(app, model, image, out)
    assert res.returncode == 0, res.stderr
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    ref = python_reference(model, image)
    assert got.dtype == np.uint8
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert_same_geometry(image, out)
    return got


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny scripted predictor, threshold -500 (mm-scaled)."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.ts", threshold=-500.0)


def ct_like(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A random int16 'CT' with a bright blob, so the mask is neither empty nor full."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(-800, 200, size=shape)
    sl = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    arr[sl] += 700
    return arr.astype(np.int16)


def sitk_image(arr: np.ndarray) -> sitk.Image:
    """``arr`` as a SimpleITK image with a non-trivial spacing, origin and direction."""
    img = sitk.GetImageFromArray(arr)
    n = arr.ndim
    img.SetSpacing([0.7, 0.9, 2.5][:n])
    img.SetOrigin([-12.5, 30.25, 7.0][:n])
    if n == 3:
        c, s = np.cos(0.3), np.sin(0.3)
        img.SetDirection([c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0])
    else:
        img.SetDirection([0.0, 1.0, 1.0, 0.0])
    return img


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_synthetic_volume_same_mask_and_geometry(app_build, model, tmp_path, suffix):
    src = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk_image(ct_like((9, 20, 24))), str(src))
    mask = check_app(app_build, model, src, tmp_path / f"mask{suffix}")
    assert 0 < mask.mean() < 1


def test_probabilities_float32(app_build, model, tmp_path):
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk_image(ct_like((7, 16, 18))), str(src))
    out = tmp_path / "prob.nii.gz"
    res = run_app(app_build, model, src, out, "--probabilities")
    assert res.returncode == 0, res.stderr
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, python_reference(model, src, "probabilities"), atol=1e-6)
    assert_same_geometry(src, out)


@pytest.mark.parametrize("code, gz", [(code, i % 2 == 1) for i, code in enumerate(sorted(DTYPES))])
def test_each_datatype(app_build, tmp_path, code, gz):
    dtype = np.dtype(DTYPES[code])
    arr = ct_like((6, 11, 13), seed=code).astype(np.float64)
    if dtype.kind in "iu" and dtype.itemsize == 1:
        arr = arr / 8  # fits int8; shifted into uint8 below
    if dtype.kind == "u":
        arr = arr - arr.min()
    arr = arr.astype(dtype)
    src = tmp_path / ("in.nii.gz" if gz else "in.nii")
    src.write_bytes(nifti_bytes(arr, header_for(arr), gz=gz))
    # threshold at the median (the model scales it by the mean spacing, 4/3 mm here)
    model = save_tiny_model(tmp_path / "m.ts", threshold=float(np.median(arr)) * 0.75)
    mask = check_app(app_build, model, src, tmp_path / "out.nii.gz")
    assert 0 < mask.mean() < 1


def test_scl_slope_and_inter_applied(app_build, model, tmp_path):
    stored = (ct_like((6, 12, 12)).astype(np.int32) + 1024) // 2
    arr = stored.astype(np.int16)
    scaled = tmp_path / "scaled.nii"
    scaled.write_bytes(nifti_bytes(arr, header_for(arr, scl_slope=2.0, scl_inter=-1024.0)))
    plain = tmp_path / "plain.nii"
    plain.write_bytes(nifti_bytes(arr, header_for(arr)))
    mask = check_app(app_build, model, scaled, tmp_path / "m1.nii")
    unscaled = check_app(app_build, model, plain, tmp_path / "m2.nii")
    assert not np.array_equal(mask, unscaled), "the scaling must change the mask in this test"


def test_big_endian_file_reads_as_little_endian(app_build, model, tmp_path):
    arr = ct_like((5, 10, 12))
    le, be = tmp_path / "le.nii", tmp_path / "be.nii"
    le.write_bytes(nifti_bytes(arr, header_for(arr)))
    be.write_bytes(nifti_bytes(arr, header_for(arr), endian=">"))
    m_le = check_app(app_build, model, le, tmp_path / "m_le.nii")
    m_be = check_app(app_build, model, be, tmp_path / "m_be.nii")
    np.testing.assert_array_equal(m_le, m_be)


def test_metre_units_scale_the_spacing_as_simpleitk(app_build, tmp_path):
    arr = ct_like((5, 10, 12))
    src = tmp_path / "m.nii"
    # pixdim in metres: 0.0007 m = 0.7 mm; the model's threshold scales with the spacing in mm
    pix = [1.0, 0.0007, 0.0008, 0.0025, 1, 1, 1, 1]
    src.write_bytes(nifti_bytes(arr, header_for(arr, pixdim=pix, xyzt_units=1, sform_code=0)))
    model = save_tiny_model(tmp_path / "t.ts", threshold=-400.0)
    check_app(app_build, model, src, tmp_path / "out.nii")


@pytest.mark.parametrize("shape", [(20, 24), (1, 20, 24)], ids=["dim0=2", "z=1"])
def test_2d_image(app_build, model, tmp_path, shape):
    arr = ct_like(shape)
    src = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk_image(arr), str(src))
    mask = check_app(app_build, model, src, tmp_path / "mask.nii.gz")
    assert mask.shape == shape


@pytest.mark.realdata
@pytest.mark.slow
def test_chest_ct(app_build, tmp_path):
    if not CHEST_CT.is_file():
        pytest.skip(f"real data absent: {CHEST_CT}")
    model = save_tiny_model(tmp_path / "t.ts", threshold=-300.0)
    mask = check_app(app_build, model, CHEST_CT, tmp_path / "chest_mask.nii.gz")
    assert mask.shape == (141, 512, 512)
    assert 0 < mask.mean() < 1


def test_window_calls_forward_window(app_build, model, tmp_path):
    arr = np.clip(ct_like((5, 12, 14)) / 8 + 128, 0, 255).astype(np.uint8)  # a 0..255 "radiopaedia"
    src = tmp_path / "rp.nii.gz"
    sitk.WriteImage(sitk_image(arr), str(src))
    out = tmp_path / "m.nii.gz"
    res = run_app(app_build, model, src, out, "--window", "0", "255")
    assert res.returncode == 0, res.stderr
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    img = sitk.ReadImage(str(src))
    with torch.inference_mode():
        ref = torch.jit.load(str(model)).forward_window(
            torch.from_numpy(sitk.GetArrayFromImage(img).astype(np.float32)),
            torch.tensor(img.GetSpacing()[::-1], dtype=torch.float64),
            torch.tensor([0.0, 255.0], dtype=torch.float64),
        )
    np.testing.assert_array_equal(got, ref.numpy())
    plain = python_reference(model, src)
    assert not np.array_equal(got, plain), "the window must change the mask in this test"


# ---------------------------------------------------------------- usage and model errors
def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rdcl_predict: ")
    return lines[0]


@pytest.fixture
def small_input(tmp_path) -> Path:
    src = tmp_path / "in.nii"
    sitk.WriteImage(sitk_image(ct_like((4, 8, 8))), str(src))
    return src


@pytest.mark.parametrize(
    "args, expect",
    [
        ([], "expected MODEL.ts INPUT OUTPUT"),
        (["--device", "tpu"], "expected --device cpu or cuda"),
        (["--frobnicate"], "unknown option"),
        (["--window", "5"], "--window needs two values"),
        (["--window", "5", "1"], "LOW < HIGH"),
        (["--window", "0", "nan"], "expected a finite number"),
    ],
)
def test_usage_errors(app_build, model, small_input, tmp_path, args, expect):
    full = [model, small_input, tmp_path / "o.nii", *args] if args else []
    res = run_app(app_build, *full)
    assert res.returncode == 2
    assert expect in _one_line(res)
    assert not (tmp_path / "o.nii").exists()


def test_output_suffix_checked(app_build, model, small_input, tmp_path):
    res = run_app(app_build, model, small_input, tmp_path / "o.png")
    assert res.returncode == 2
    assert "ending in .nii or .nii.gz" in _one_line(res)


def test_existing_output_kept_without_overwrite(app_build, model, small_input, tmp_path):
    out = tmp_path / "o.nii"
    out.write_bytes(b"keep me")
    res = run_app(app_build, model, small_input, out)
    assert res.returncode == 2
    assert "--overwrite" in _one_line(res)
    assert out.read_bytes() == b"keep me"
    assert run_app(app_build, model, small_input, out, "--overwrite").returncode == 0
    assert sitk.ReadImage(str(out)).GetSize() == (8, 8, 4)


def test_output_equal_to_input_refused(app_build, model, small_input):
    before = small_input.read_bytes()
    res = run_app(app_build, model, small_input, small_input, "--overwrite")
    assert res.returncode == 2
    assert "one of the inputs" in _one_line(res)
    assert small_input.read_bytes() == before


def test_bad_model_file(app_build, small_input, tmp_path):
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not a zip archive")
    res = run_app(app_build, bad, small_input, tmp_path / "o.nii")
    assert res.returncode == 2
    line = _one_line(res)
    assert "cannot load TorchScript model" in line
    assert "not a ZIP archive" in line  # the reason, not a line of libtorch's C++ backtrace
    assert not (tmp_path / "o.nii").exists()
    res = run_app(app_build, tmp_path / "missing.ts", small_input, tmp_path / "o.nii")
    assert res.returncode == 2
    assert "No such file or directory" in _one_line(res)


def test_model_without_probabilities_method(app_build, small_input, tmp_path):
    path = tmp_path / "f.ts"
    torch.jit.script(ForwardOnlyPredictor()).save(str(path))
    res = run_app(app_build, path, small_input, tmp_path / "o.nii", "--probabilities")
    assert res.returncode == 2
    assert "has no method 'probabilities'" in _one_line(res)


def test_model_breaking_the_contract(app_build, small_input, tmp_path):
    path = tmp_path / "w.ts"
    torch.jit.script(BoolMaskPredictor()).save(str(path))
    res = run_app(app_build, path, small_input, tmp_path / "o.nii")
    assert res.returncode == 2
    assert "broke the predictor contract" in _one_line(res)
    assert not (tmp_path / "o.nii").exists()


def test_model_raising_on_the_input(app_build, tmp_path):
    """A 3D-only model given a 2D image: the model's own error, as one line, exit 2."""

    path = tmp_path / "m3.ts"
    torch.jit.script(VolumeOnlyPredictor()).save(str(path))
    src = tmp_path / "2d.nii"
    sitk.WriteImage(sitk_image(ct_like((8, 8))), str(src))
    res = run_app(app_build, path, src, tmp_path / "o.nii")
    assert res.returncode == 2
    assert "expected a (Z, Y, X) volume" in _one_line(res)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable(app_build, model, small_input, tmp_path):
    res = run_app(app_build, model, small_input, tmp_path / "o.nii", "--device", "cuda")
    assert res.returncode == 2
    assert "no CUDA device" in _one_line(res)


def test_gz_output_is_gzip(app_build, model, small_input, tmp_path):
    out = tmp_path / "o.nii.gz"
    assert run_app(app_build, model, small_input, out).returncode == 0
    raw = gzip.decompress(out.read_bytes())
    assert raw[344:348] == b"n+1\0"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
