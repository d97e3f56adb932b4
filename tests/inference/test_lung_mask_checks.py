"""A lung mask is checked like a label and a share that cannot be computed is never 0 (issue 18,
item 5: an EMPTY lung mask reported lung 0 mL and 0 % infected beside the infection, exit 0; a
lung mask of 0.5 values counted as lung wherever > 0)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from rdcl.cli import main
from rdcl.config import preset
from rdcl.data.io import Geometry, write_image
from rdcl.errors import RdclInputError
from rdcl.formats.checkpoint import FORMAT, save_checkpoint
from rdcl.inference.quantify import MIN_INFECTION_INSIDE, quantify
from rdcl.model import build_network

SPACING = (2.0, 1.0, 1.0)


def _infection() -> np.ndarray:
    m = np.zeros((4, 8, 8), np.uint8)
    m[1:3, 2:4, 2:6] = 1  # 16 voxels
    return m


def _lung() -> np.ndarray:
    lung = np.zeros((4, 8, 8), np.uint8)
    lung[:, :5, :] = 1  # holds the whole infection
    return lung


@pytest.mark.parametrize(
    ("lung", "message"),
    [
        (np.zeros((4, 8, 8), np.uint8), "lung mask is empty"),
        (_lung() * 0.5, r"found values 0, 0\.5"),
        (_lung().astype(np.float32) + 0.25, "found values"),
        (_lung() * 3, r"found values \[0, 3\]"),
        (np.where(_lung() > 0, -1, 0), r"found values \[-1, 0\]"),
    ],
    ids=["empty", "half", "fractional", "three", "negative"],
)
def test_a_bad_lung_mask_is_refused(lung, message):
    with pytest.raises(RdclInputError, match=message) as info:
        quantify("c", _infection(), SPACING, lung, "lung.nii.gz")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scale", [1, 255, 2])
def test_binary_255_and_left_right_labels_are_lung(scale):
    lung = _lung() * scale
    if scale == 2:
        lung[:, :2, :] = 1  # left lung 1, right lung 2 (COVID-19-CT-Seg Lung_Mask)
    q = quantify("c", _infection(), SPACING, lung, "lung.nii.gz")
    assert q.lung_ml == pytest.approx(4 * 5 * 8 * 2.0 / 1000)
    assert q.percent_infected == pytest.approx(100 * 16 / 160)


def test_infection_mostly_outside_the_lung_is_refused():
    lung = np.zeros((4, 8, 8), np.uint8)
    lung[:, 6:, :] = 1  # none of the infection
    with pytest.raises(RdclInputError, match="only 0% of the predicted infection"):
        quantify("c", _infection(), SPACING, lung, "lung.nii.gz")
    lung[1:3, 2:3, 2:6] = 1  # exactly half of it: accepted
    assert MIN_INFECTION_INSIDE == 0.5
    q = quantify("c", _infection(), SPACING, lung, "lung.nii.gz")
    assert q.percent_infected == pytest.approx(100 * 8 / int(lung.sum()))


def test_no_infection_is_a_computed_zero():
    q = quantify("c", np.zeros((4, 8, 8), np.uint8), SPACING, _lung(), "lung.nii.gz")
    assert q.percent_infected == 0.0 and q.lung_ml and q.lung_ml > 0


def test_an_approximate_mask_leaves_the_figures_empty_with_the_reason():
    empty = quantify(
        "c", _infection(), SPACING, np.zeros((4, 8, 8), np.uint8), "auto", approximate=True
    )
    assert empty.lung_ml is None and empty.percent_infected is None
    assert empty.lung_mask == "auto: no lung found, lung figures not computed"
    outside = np.zeros((4, 8, 8), np.uint8)
    outside[:, 6:, :] = 1
    q = quantify("c", _infection(), SPACING, outside, "auto", approximate=True)
    assert q.percent_infected is None and "most infection outside" in (q.lung_mask or "")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny 3D checkpoint whose network predicts lesion everywhere, and two input images."""
    root = tmp_path_factory.mktemp("lung")
    cfg = preset("tiny3d")
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    state = net.state_dict()
    heads = [k for k in state if k.endswith("bias") and "head" in k]
    assert heads
    for k in heads:
        state[k] = torch.full_like(state[k], 50.0)  # sigmoid ~ 1: every voxel is lesion
    ckpt = save_checkpoint(
        root / "m.ckpt",
        {"format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
         "step": 0, "model": state, "optimizer": None, "rng": None,
         "intensity": {"mean": -500.0, "std": 300.0, "lo": -1000.0, "hi": 200.0},
         "dataset": {"name": "t", "dim": 3}},
    )  # fmt: skip
    geom = Geometry.default(3, SPACING)
    src = root / "in"
    src.mkdir()
    for i in range(2):
        write_image(np.full((8, 16, 16), -800, np.int16), geom, src / f"case{i}_0000.nii.gz")
    return root, ckpt, src, geom


def _run(setup, tmp_path, lungs: dict[str, np.ndarray], capsys) -> tuple[int, list[str]]:
    _root, ckpt, src, geom = setup
    folder = tmp_path / "lungs"
    folder.mkdir()
    for name, lung in lungs.items():
        write_image(lung, geom, folder / f"{name}.nii.gz")
    argv = ["predict", "-m", str(ckpt), "-i", str(src), "-o", str(tmp_path / "out")]
    code = main([*argv, "--report", str(tmp_path / "q.csv"), "--lung-mask", str(folder)])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (np.zeros((8, 16, 16), np.uint8), "lung mask is empty"),
        (np.full((8, 16, 16), 0.5, np.float32), "found values 0.5"),
    ],
    ids=["empty", "half"],
)
def test_predict_report_refuses_a_bad_lung_mask_before_any_work(
    setup, tmp_path, capsys, second, message
):
    good = np.ones((8, 16, 16), np.uint8)
    code, err = _run(setup, tmp_path, {"case0": good, "case1": second}, capsys)
    assert code == 2 and len(err) == 1 and message in err[0] and "case1" in err[0], err
    # no progress line, no masks, no report: nothing half-written
    assert not (tmp_path / "out").exists() and not (tmp_path / "q.csv").exists()
    assert not (tmp_path / "q.json").exists()


def test_predict_report_with_sound_lung_masks(setup, tmp_path, capsys):
    lung = np.zeros((8, 16, 16), np.uint8)
    lung[:, :, :12] = 1  # 3/4 of the image: holds 75% of the everywhere-infection
    code, err = _run(setup, tmp_path, {"case0": lung, "case1": lung}, capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "q.csv").open()))
    assert [float(r["percent_infected"]) for r in rows] == [100.0, 100.0]
    assert [float(r["lung_ml"]) for r in rows] == [pytest.approx(8 * 16 * 12 * 2.0 / 1000)] * 2
