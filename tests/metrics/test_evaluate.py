"""evaluate_folders on small synthetic NIfTI files, and summarize."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from rdcl.data.io import Geometry, write_image
from rdcl.metrics.evaluate import evaluate_folders, summarize


def _cube(offset: int) -> np.ndarray:
    m = np.zeros((8, 12, 12), np.uint8)
    m[2:6, 3 + offset : 8 + offset, 3:8] = 1
    return m


@pytest.fixture
def folders(tmp_path):
    geom = Geometry.default(3, (2.0, 1.0, 1.0))
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    write_image(_cube(0), geom, gt / "case_a.nii.gz")
    write_image(_cube(0), geom, pred / "case_a_0000.nii.gz")  # nnU-Net channel suffix
    write_image(_cube(0), geom, gt / "case_b.nii.gz")
    write_image(_cube(1), geom, pred / "case_b.nii.gz")
    return pred, gt


def test_evaluate_folders_rows_and_csv(folders, tmp_path):
    pred, gt = folders
    out = tmp_path / "metrics.csv"
    rows = evaluate_folders(pred, gt, csv_path=out)
    assert [r["case"] for r in rows] == ["case_a", "case_b"]
    assert rows[0]["dsc"] == 1.0 and rows[0]["nsd"] == 1.0 and rows[0]["hd95"] == 0.0
    # case_b: 5-voxel-wide cubes shifted by one voxel: Dice 2 * 4 / 10 = 0.8, HD100 = 1 mm.
    assert rows[1]["dsc"] == pytest.approx(0.8)
    assert rows[1]["hd95"] == 1.0
    with out.open() as fh:
        assert [r["case"] for r in csv.DictReader(fh)] == ["case_a", "case_b"]
    with pytest.raises(FileExistsError):
        evaluate_folders(pred, gt, csv_path=out)
    summary = summarize(rows)
    assert summary["dsc"]["mean"] == pytest.approx(0.9)
    assert summary["dsc"]["std"] == pytest.approx(0.1)


def test_geometry_mismatch_raises(tmp_path):
    write_image(_cube(0), Geometry.default(3, (2.0, 1.0, 1.0)), tmp_path / "gt.nii.gz")
    write_image(_cube(0), Geometry.default(3, (1.0, 1.0, 1.0)), tmp_path / "pred.nii.gz")
    with pytest.raises(ValueError, match="geometry"):
        evaluate_folders(tmp_path / "pred.nii.gz", tmp_path / "gt.nii.gz")


def test_summarize_skips_nan_and_counts_inf():
    rows = [
        {"case": "a", "dsc": 1.0, "nsd": 1.0, "hd95": 0.0, "assd": 0.0},
        {"case": "b", "dsc": math.nan, "nsd": math.nan, "hd95": math.inf, "assd": math.inf},
    ]
    s = summarize(rows)
    assert s["dsc"] == {"mean": 1.0, "std": 0.0, "n": 1, "n_inf": 0}
    assert s["hd95"]["n_inf"] == 1


def test_published_layout_names_match(tmp_path):
    # rdcl predict keeps the image names of published layouts: tr_im_NNNN.png (COVID-19-CT100,
    # masks tr_mask_NNNN.png) and coronacases_org_NNN.nii.gz (COVID-19-CT-Seg, masks
    # coronacases_NNN.nii.gz); evaluate pairs them with their masks as the dataset loader does.
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    m = np.zeros((12, 12), np.uint8)
    m[3:8, 3:8] = 255
    for name in ("tr_im_0000", "tr_im_0001"):
        write_image(m, Geometry.default(2), pred / f"{name}.png")
    for name in ("tr_mask_0000", "tr_mask_0001"):
        write_image(m, Geometry.default(2), gt / f"{name}.png")
    vol = _cube(0)
    write_image(vol, Geometry.default(3), pred / "coronacases_org_001.nii.gz")
    write_image(vol, Geometry.default(3), gt / "coronacases_001.nii.gz")
    rows = evaluate_folders(pred, gt, progress=False)
    assert [r["case"] for r in rows] == ["coronacases_001", "tr_mask_0000", "tr_mask_0001"]
    assert [r["dsc"] for r in rows] == [1.0, 1.0, 1.0]


def test_geometry_tolerance_matches_the_dataset_loader(tmp_path):
    # A prediction carries its image's geometry; the loader pairs images with labels whose
    # geometry agrees within 1e-3 mm, so evaluation must accept the same difference.
    write_image(
        _cube(0), Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), GEOM_EYE), tmp_path / "gt.nii.gz"
    )
    write_image(
        _cube(0), Geometry((2.0, 1.0, 1.0), (5e-4, 0.0, 0.0), GEOM_EYE), tmp_path / "p.nii.gz"
    )
    rows = evaluate_folders(tmp_path / "p.nii.gz", tmp_path / "gt.nii.gz", progress=False)
    assert rows[0]["dsc"] == 1.0
    write_image(
        _cube(0), Geometry((2.0, 1.0, 1.0), (5e-3, 0.0, 0.0), GEOM_EYE), tmp_path / "q.nii.gz"
    )
    with pytest.raises(ValueError, match="geometry"):
        evaluate_folders(tmp_path / "q.nii.gz", tmp_path / "gt.nii.gz", progress=False)


GEOM_EYE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
