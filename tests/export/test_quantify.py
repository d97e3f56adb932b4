"""Infection quantification: volumes, lesion counts, lung share, auto lung mask, CLI report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _export_helpers import config, phantom, save_ckpt

from rdcl.cli import main
from rdcl.data.io import read_image, write_image
from rdcl.inference.quantify import auto_lung_mask, count_lesions, quantify, write_report


def test_volume_lesions_and_percent_from_spacing():
    mask = np.zeros((6, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[3, 3, 3] = 1  # touches the first blob at a corner only: same lesion (full connectivity)
    mask[5, 8, 8] = 1  # a second lesion
    lung = np.zeros_like(mask)
    lung[:, :5, :] = 1  # 300 voxels holding the first lesion (9 voxels)
    q = quantify("c", mask, (2.0, 0.5, 0.5), lung, "lung.nii.gz")
    assert q.lesions == 2 and count_lesions(mask) == 2
    assert q.infection_ml == pytest.approx(10 * 0.5 / 1000)
    assert q.lung_ml == pytest.approx(300 * 0.5 / 1000)
    assert q.percent_infected == pytest.approx(100 * 9 / 300)
    bare = quantify("c", mask, (1.0, 1.0, 1.0))
    assert bare.lung_ml is None and bare.percent_infected is None and bare.lung_mask is None
    with pytest.raises(ValueError, match="lung mask shape"):
        quantify("c", mask, (1.0, 1.0, 1.0), lung[:, :4])


def test_auto_lung_mask_finds_the_phantom_lungs():
    image, lung, geom = phantom((24, 64, 64), (2.5, 1.6, 1.6), seed=1)
    auto = auto_lung_mask(image, geom.spacing)
    inter = np.logical_and(auto > 0, lung > 0).sum()
    dice = 2 * inter / (auto.sum() + lung.sum())
    assert dice > 0.85, dice
    assert auto[:, 0, :].sum() == 0  # outside air removed


def test_report_csv_and_json(tmp_path):
    rows = [
        quantify("a", np.ones((2, 2, 2)), (1.0, 1.0, 1.0)),
        quantify("b", np.ones((3, 3)), (1.0, 2.0)),
    ]
    csv_path, json_path = write_report(rows, tmp_path / "q.csv")
    table = list(csv.DictReader(csv_path.open()))
    assert [r["case"] for r in table] == ["a", "b"]
    assert table[0]["infection_ml"] == "0.008" and table[1]["dim"] == "2"
    doc = json.loads(json_path.read_text())
    assert doc["cases"][1]["infection_ml"] == pytest.approx(0.018)
    assert "approximate" in doc["auto_lung_mask"]


def test_predict_report_with_lung_masks_and_auto(tmp_path, capsys):
    cfg = config("tiny3d")
    ckpt = save_ckpt(tmp_path / "m.ckpt", cfg)
    src, lungs = tmp_path / "in", tmp_path / "lungs"
    src.mkdir()
    lungs.mkdir()
    for i in range(2):
        image, lung, geom = phantom((16, 48, 48), (5.0, 6.0, 6.0), seed=10 + i)
        write_image(image, geom, src / f"case{i}_0000.nii.gz")
        write_image(lung, geom, lungs / f"case{i}.nii.gz")
    out = tmp_path / "out"
    argv = ["predict", "-q", "-m", str(ckpt), "-i", str(src), "-o", str(out)]
    # the untrained network predicts lesions anywhere; a lung mask must hold most of them
    # (issue 18), so each lung mask here is the phantom's lungs plus that prediction
    assert main([*argv]) == 0
    for i in range(2):
        lung, geom = read_image(lungs / f"case{i}.nii.gz")
        pred = read_image(out / f"case{i}.nii.gz")[0]
        write_image((lung | pred).astype(np.uint8), geom, lungs / f"case{i}.nii.gz", overwrite=True)
    argv.append("--overwrite")
    assert main([*argv, "--report", str(tmp_path / "q.csv"), "--lung-mask", str(lungs)]) == 0
    rows = list(csv.DictReader((tmp_path / "q.csv").open()))
    assert [r["case"] for r in rows] == ["case0_0000", "case1_0000"]
    for i, row in enumerate(rows):
        mask, geom = read_image(out / f"case{i}.nii.gz")
        lung = read_image(lungs / f"case{i}.nii.gz")[0]
        vml = float(np.prod(geom.spacing)) / 1000
        assert float(row["infection_ml"]) == pytest.approx(mask.sum() * vml, abs=1e-3)
        assert float(row["lung_ml"]) == pytest.approx(lung.sum() * vml, abs=1e-3)
        want = 100 * np.logical_and(mask > 0, lung > 0).sum() / lung.sum()
        assert float(row["percent_infected"]) == pytest.approx(want, abs=1e-3)
        assert int(row["lesions"]) == count_lesions(mask)
    assert (tmp_path / "q.json").is_file()
    # auto: labelled approximate; an existing report is refused before any work
    argv2 = [*argv, "--report", str(tmp_path / "q2.csv"), "--lung-mask", "auto"]
    assert main(argv2) == 0
    rows = list(csv.DictReader((tmp_path / "q2.csv").open()))
    for r in rows:  # figures from the approximate mask, or none (never 0) with the reason
        assert r["lung_mask"].startswith("auto (approximate)")
        if r["lung_mask"] == "auto (approximate)":
            assert float(r["lung_ml"]) > 0
        else:
            assert r["lung_ml"] == r["percent_infected"] == "" and "not computed" in r["lung_mask"]
    fresh = ["predict", "-q", "-m", str(ckpt), "-i", str(src), "-o", str(tmp_path / "out3")]
    code = main([*fresh, "--report", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "report exists" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out3").exists()
    code = main([*argv, "--lung-mask", "auto"])
    err = capsys.readouterr().err
    assert code == 2 and "--lung-mask needs --report" in err
