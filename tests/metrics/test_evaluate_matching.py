"""rdcl evaluate: a missing or ambiguous prediction is an error; --allow-missing scores a missing
one as an empty mask and says so; --threads >= 1 (issue 11, item 13)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from rdcl.cli import main
from rdcl.data.io import Geometry, write_image
from rdcl.metrics.evaluate import evaluate_folders, match_cases

GEOM = Geometry.default(3, (2.0, 1.0, 1.0))


def _cube(offset: int = 0) -> np.ndarray:
    m = np.zeros((8, 12, 12), np.uint8)
    m[2:6, 3 + offset : 8 + offset, 3:8] = 1
    return m


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for name in ("a", "b", "c"):
        write_image(_cube(), GEOM, gt / f"{name}.nii.gz")
    write_image(_cube(), GEOM, pred / "a.nii.gz")
    write_image(_cube(1), GEOM, pred / "b_0000.nii.gz")
    return pred, gt  # c has no prediction


def test_missing_prediction_is_an_error_by_default(folders):
    pred, gt = folders
    with pytest.raises(ValueError, match=r"found none for 1 of 3 cases \(c\)") as info:
        evaluate_folders(pred, gt, progress=False)
    assert "--allow-missing" in str(info.value) and "\n" not in str(info.value)


def test_allow_missing_scores_an_empty_mask(folders, tmp_path):
    pred, gt = folders
    out = tmp_path / "scores.csv"
    rows = evaluate_folders(pred, gt, progress=False, allow_missing=True, csv_path=out)
    assert [r["case"] for r in rows] == ["a", "b", "c"]
    assert [r["missing"] for r in rows] == [False, False, True]
    c = rows[2]
    assert c["dsc"] == 0.0 and c["nsd"] == 0.0 and math.isinf(c["hd95"])
    with out.open() as fh:
        assert [r["missing"] for r in csv.DictReader(fh)] == ["0", "0", "1"]


@pytest.mark.parametrize(
    "names",
    [("x.nii.gz", "x_0000.nii.gz"), ("x.nii.gz", "x.nrrd"), ("tr_im_0001.png", "tr_img_0001.png")],
)
def test_ambiguous_prediction_is_an_error(tmp_path, names):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    two_d = names[0].endswith(".png")
    mask = _cube()[4] if two_d else _cube()
    geom = Geometry.default(2) if two_d else GEOM
    write_image(mask, geom, gt / ("tr_mask_0001.png" if two_d else "x.nii.gz"))
    for n in names:
        write_image(mask, geom, pred / n)
    with pytest.raises(ValueError, match="expected one prediction") as info:
        match_cases(pred, gt)
    assert all(n in str(info.value) for n in names)


def test_one_prediction_for_two_labels_is_an_error(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    m = _cube()[4]
    write_image(m, Geometry.default(2), gt / "tr_mask_0001.png")
    write_image(m, Geometry.default(2), gt / "tr_label_0001.png")
    write_image(m, Geometry.default(2), pred / "tr_im_0001.png")
    with pytest.raises(ValueError, match="matches both labels"):
        match_cases(pred, gt)


@pytest.mark.parametrize("threads", [0, -4])
def test_threads_must_be_positive(folders, threads):
    pred, gt = folders
    with pytest.raises(ValueError, match="threads must be >= 1"):
        evaluate_folders(pred, gt, threads=threads, progress=False, allow_missing=True)


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_cli_missing_ambiguous_and_allow_missing(folders, tmp_path, capsys):
    pred, gt = folders
    base = ["evaluate", "--pred", str(pred), "--gt", str(gt), "-q"]
    code, out, err = _run(capsys, base)
    assert code == 2 and len(err) == 1 and "--allow-missing" in err[0] and out == ""
    code, out, err = _run(capsys, [*base, "--allow-missing"])
    assert code == 0, err
    rows = {line.split("\t")[0]: line for line in out.splitlines()}
    assert rows["c"].endswith("no prediction: scored as an empty mask")
    assert "scored as an empty mask" not in rows["a"]
    assert "1 of 3 cases had no prediction and were scored as empty masks" in out
    write_image(_cube(), GEOM, pred / "a_0000.nii.gz")  # now a.nii.gz and a_0000.nii.gz
    code, out, err = _run(capsys, [*base, "--allow-missing"])
    assert code == 2 and len(err) == 1 and "a.nii.gz, a_0000.nii.gz" in err[0]


@pytest.mark.parametrize("value", ["0", "-4", "abc", "1.5"])
def test_cli_threads_must_be_positive(folders, capsys, value):
    pred, gt = folders
    code, _, err = _run(
        capsys, ["evaluate", "--pred", str(pred), "--gt", str(gt), "--threads", value]
    )
    assert code == 2 and len(err) == 1 and "--threads" in err[0] and ">= 1" in err[0]
