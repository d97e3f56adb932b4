"""``rdcl export`` and ``rdcl predict -m MODEL.ts`` from the command line."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from _export_helpers import SHARED, config, phantom, save_ckpt

from rdcl.cli import main
from rdcl.data.io import Geometry, read_image, write_image
from rdcl.export.check import CheckResult
from rdcl.inference import Predictor


def _one_error_line(capsys, code: int, match: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], err


@pytest.fixture(scope="module")
def ckpt3d(tmp_path_factory):
    cfg = config("tiny3d", target_spacing=(2.0, 1.5, 1.5))
    return save_ckpt(tmp_path_factory.mktemp("m") / "final.ckpt", cfg, kind="dual")


@pytest.fixture(scope="module")
def exported3d(ckpt3d, tmp_path_factory):
    out = tmp_path_factory.mktemp("e") / "model.ts"
    assert main(["export", "-q", "-m", str(ckpt3d.parent), "--out", str(out)]) == 0
    return out


def test_export_prints_the_check_and_predict_gives_the_eager_mask(
    ckpt3d, exported3d, tmp_path, capsys
):
    image, _, geom = phantom((20, 40, 44), (2.5, 1.3, 1.3), seed=3)
    src = tmp_path / "case.nii.gz"
    write_image(image, geom, src)
    out = tmp_path / "mask.nii.gz"
    argv = ["predict", "-q", "-m", str(exported3d), "-i", str(src), "-o", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    mask, mask_geom = read_image(out)
    want = Predictor.from_checkpoint(ckpt3d, device="cpu").predict_array(image, geom)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(mask, want)
    assert mask_geom.matches(geom, atol=1e-6) and mask.dtype == np.uint8
    # sliding-window options belong to the export, not to prediction with an exported file
    code = main([*argv, "--overwrite", "--mirror"])
    _one_error_line(capsys, code, "fixed at export")


def test_export_refuses_existing_output_and_bad_arguments(ckpt3d, exported3d, capsys, tmp_path):
    before = exported3d.read_bytes()
    code = main(["export", "-m", str(ckpt3d), "--out", str(exported3d)])
    _one_error_line(capsys, code, "pass --overwrite")
    assert exported3d.read_bytes() == before
    code = main(["export", "-m", str(ckpt3d), "--out", str(tmp_path / "m.pt2")])
    _one_error_line(capsys, code, "expected --out ending in .ts")
    code = main(["export", "-m", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "m.ts")])
    _one_error_line(capsys, code, "model not found")
    code = main(["predict", "-m", str(tmp_path / "x.ts"), "-i", str(ckpt3d), "-o", "o.nii.gz"])
    assert code == 2
    capsys.readouterr()


def test_failed_check_deletes_the_file_and_exits_2(ckpt3d, tmp_path, capsys, monkeypatch):
    import rdcl.export.exporter as exporter

    def failing(*args, **kwargs):
        return CheckResult(False, False, 0.5, True, 0.4, 10, "check: FAILED: Dice 0.50000")

    monkeypatch.setattr(exporter, "compare", failing)
    out = tmp_path / "m.ts"
    out.write_bytes(b"previous model")
    code = main(["export", "-m", str(ckpt3d), "--out", str(out), "--overwrite"])
    _one_error_line(capsys, code, "FAILED: Dice 0.50000")
    assert out.read_bytes() == b"previous model"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ts"]  # no temp file left


def _fake_covid_folder(folder, image, geom):
    """A COVID-19-CT-Seg style folder: a HU coronacases volume and a 0..255 radiopaedia one."""
    folder.mkdir()
    write_image(image, geom, folder / "coronacases_org_001.nii.gz")
    scaled = (np.clip(image, -1250, 250) + 1250.0) / 1500.0 * 255.0
    write_image(
        scaled.astype(np.float32), geom, folder / "radiopaedia_org_covid-19-pneumonia-7-dcm.nii.gz"
    )
    return scaled


def test_published_conventions_and_window_override(tmp_path, capsys):
    cfg = config("tiny3d", normalization="window", window=(-1250.0, 250.0))
    ckpt = save_ckpt(tmp_path / "m.ckpt", cfg)
    image, _, geom = phantom((16, 48, 48), (2.0, 1.0, 1.0), seed=4)
    src = tmp_path / "in"
    scaled = _fake_covid_folder(src, image, geom)
    hu_mask = Predictor.from_checkpoint(ckpt, device="cpu").predict_array(image, geom)
    assert 0 < hu_mask.sum() < hu_mask.size
    model = tmp_path / "m.ts"
    assert main(["export", "-q", "-m", str(ckpt), "--out", str(model)]) == 0
    for m in (ckpt, model):  # checkpoint and exported file alike
        out = tmp_path / f"out_{m.suffix[1:]}"
        assert main(["predict", "-q", "-m", str(m), "-i", str(src), "-o", str(out)]) == 0
        corona = read_image(out / "coronacases_org_001.nii.gz")[0]
        radio = read_image(out / "radiopaedia_org_covid-19-pneumonia-7-dcm.nii.gz")[0]
        np.testing.assert_array_equal(corona, hu_mask)
        assert (radio != hu_mask).mean() < 1e-3  # its own 0..255 convention was used
        # a single file with an unrecognised name: wrong without --window, right with it
        single = tmp_path / "scan.nii.gz"
        write_image(scaled.astype(np.float32), geom, single)
        wrong, right = tmp_path / f"w_{m.suffix[1:]}.nii.gz", tmp_path / f"r_{m.suffix[1:]}.nii.gz"
        assert main(["predict", "-q", "-m", str(m), "-i", str(single), "-o", str(wrong)]) == 0
        argv = ["predict", "-q", "-m", str(m), "-i", str(single), "-o", str(right)]
        assert main([*argv, "--window", "0", "255"]) == 0
        assert (read_image(wrong)[0] != hu_mask).mean() > 0.05
        assert (read_image(right)[0] != hu_mask).mean() < 1e-3
        single.unlink()
    code = main(["predict", "-m", str(model), "-i", str(src), "-o", str(tmp_path / "x"),
                 "--window", "5", "1"])  # fmt: skip
    _one_error_line(capsys, code, "low < high")


COVID_PNG = SHARED / "covid19_ct100" / "images" / "tr_im_0000.png"


@pytest.mark.realdata
def test_2d_model_on_a_png_derived_nifti(tmp_path):
    if not COVID_PNG.is_file():
        pytest.skip(f"real data not available: {COVID_PNG} (../shared/data is absent)")
    cfg = config("tiny2d", normalization="window", window=(0.0, 255.0))
    ckpt = save_ckpt(tmp_path / "m.ckpt", cfg, dataset={"window": [0.0, 255.0]})
    png, _ = read_image(COVID_PNG)
    geom = Geometry((0.75, 0.75), (-190.0, -180.0), (1.0, 0.0, 0.0, 1.0))
    src = tmp_path / "slice.nii.gz"
    write_image(png.astype(np.int16), geom, src)
    model = tmp_path / "m.ts"
    assert (
        main(["export", "-q", "-m", str(ckpt), "--out", str(model), "--check-input", str(src)]) == 0
    )
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "-q", "-m", str(model), "-i", str(src), "-o", str(out)]) == 0
    mask, mask_geom = read_image(out)
    image, image_geom = read_image(src)
    want = Predictor.from_checkpoint(ckpt, device="cpu").predict_array(image, image_geom)
    assert mask.shape == png.shape and 0 < want.sum() < want.size
    np.testing.assert_array_equal(mask, want)
    assert mask_geom.matches(image_geom, atol=1e-6)
    module = torch.jit.load(str(model))  # the same from Python without rdcl's predictor
    got = module(torch.from_numpy(image.astype(np.float32)), torch.tensor([0.75, 0.75]).double())
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("RDCL_TEST_AOTI") != "1" or shutil.which("c++") is None,
    reason="AOTInductor compiles C++ for minutes; set RDCL_TEST_AOTI=1 (needs a C++ compiler)",
)
def test_aoti_export_and_predict(tmp_path):
    cfg = config("tiny2d", normalization="window", window=(-1250.0, 250.0))
    ckpt = save_ckpt(tmp_path / "m.ckpt", cfg)
    model = tmp_path / "m.pt2"
    assert main(["export", "-q", "-m", str(ckpt), "--out", str(model), "--format", "aoti"]) == 0
    image, _, geom = phantom((64, 72), (0.8, 0.8), seed=5)
    src = tmp_path / "s.nii.gz"
    write_image(image, geom, src)
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "-q", "-m", str(model), "-i", str(src), "-o", str(out)]) == 0
    want = Predictor.from_checkpoint(ckpt, device="cpu").predict_array(image, geom)
    np.testing.assert_array_equal(read_image(out)[0], want)
