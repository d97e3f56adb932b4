"""Wrong-typed dataset.json fields, symbolic link loops, folders in place of case files and broken
intensity blocks: one line each instead of a traceback (issue 11, item 11)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rdcl.data.datasets.layout import load_dataset
from rdcl.data.datasets.spec import DatasetError
from rdcl.data.io import Geometry, write_image
from rdcl.data.preprocessing.intensity import IntensityStats

GEOM = Geometry.default(3, (2.0, 1.0, 1.0))
META = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "lesion": 1},
    "numTraining": 2,
    "file_ending": ".nii.gz",
}


def _nnunet(root: Path, meta: dict | None = None) -> Path:
    for i in range(2):
        image = np.full((4, 8, 8), -800, np.int16)
        label = np.zeros((4, 8, 8), np.uint8)
        label[1:3, 2:5, 2:5] = 1
        write_image(image, GEOM, root / "imagesTr" / f"c{i}_0000.nii.gz")
        write_image(label, GEOM, root / "labelsTr" / f"c{i}.nii.gz")
    (root / "dataset.json").write_text(json.dumps(meta if meta is not None else META))
    return root


def _one_line(info: pytest.ExceptionInfo) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("channel_names", 3),
        ("channel_names", ["CT"]),
        ("channel_names", {"0": 1}),
        ("labels", [0, 1]),
        ("labels", "lesion"),
        ("labels", {"background": 0, "lesion": 1.5}),
        ("rdcl", "abc"),
        ("rdcl", [1]),
        ("file_ending", 5),
        ("file_ending", "niigz"),
        ("name", ["x"]),
        ("numTraining", "2"),
        ("numTraining", -1),
        ("training", "all"),
        ("training", [{"image": 5}]),
    ],
)
def test_wrong_typed_dataset_json_field_is_one_line(tmp_path, key, value):
    root = _nnunet(tmp_path / "ds", {**META, key: value})
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    text = _one_line(info)
    assert f'"{key}" expected' in text and "dataset.json" in text


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"lesion": 5}, "rdcl.lesion"),
        ({"label_map": [1, 2]}, "rdcl.label_map"),
        ({"label_map": {"a": 1}}, "rdcl.label_map"),
        ({"label_map": {"3": 2}}, "rdcl.label_map"),
        ({"label_map": {"-1": 1}}, "rdcl.label_map"),
        ({"normalization": "foo"}, "rdcl.normalization"),
    ],
)
def test_wrong_typed_rdcl_block_is_one_line(tmp_path, block, key):
    root = _nnunet(tmp_path / "ds", {**META, "rdcl": block})
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert f'"{key}" expected' in _one_line(info)


def test_valid_published_label_forms_still_load(tmp_path):
    regions = {**META, "labels": {"background": 0, "lesion": [1, 2]}, "rdcl": {"lesion": "covid"}}
    assert len(load_dataset(_nnunet(tmp_path / "a", regions)).cases) == 2
    mapped = {**META, "rdcl": {"label_map": {"0": 0, "1": 1}, "synthetic": {"seed": 0}}}
    assert len(load_dataset(_nnunet(tmp_path / "b", mapped)).cases) == 2


def _self_loop(path: Path) -> None:
    path.unlink()
    os.symlink(path.name, path)


@pytest.mark.parametrize(
    "target", ["imagesTr/c0_0000.nii.gz", "imagesTr/c1_0000.nii.gz", "labelsTr/c1.nii.gz"]
)
def test_symlink_loop_in_a_dataset_is_one_line(tmp_path, target):
    root = _nnunet(tmp_path / "ds")
    _self_loop(root / target)
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    text = _one_line(info)
    assert "symbolic link loop" in text and target.split("/")[-1] in text


def test_symlink_loop_listed_in_msd_dataset_json(tmp_path):
    root = _nnunet(tmp_path / "ds")
    os.symlink("loop.nii.gz", root / "imagesTr" / "loop.nii.gz")
    meta = {
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "cancer"},
        "training": [{"image": "./imagesTr/loop.nii.gz", "label": "./labelsTr/c0.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="symbolic link loop"):
        load_dataset(root)


def test_dataset_root_that_is_a_symlink_loop(tmp_path):
    os.symlink("ds", tmp_path / "ds")
    with pytest.raises(DatasetError, match="symbolic link loop"):
        load_dataset(tmp_path / "ds")


@pytest.mark.parametrize("target", ["imagesTr/c1_0000.nii.gz", "labelsTr/c1.nii.gz"])
def test_folder_in_place_of_a_case_file(tmp_path, target):
    root = _nnunet(tmp_path / "ds")
    (root / target).unlink()
    (root / target).mkdir()
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    text = _one_line(info)
    assert "found a folder" in text and target.split("/")[-1] in text


def test_folder_in_place_of_a_paired_image(tmp_path):
    root = tmp_path / "paired"
    write_image(np.zeros((8, 8), np.uint8), Geometry.default(2), root / "masks" / "a_mask.png")
    (root / "images" / "a_im.png").mkdir(parents=True)
    with pytest.raises(DatasetError, match="found a folder"):
        load_dataset(root)


@pytest.mark.parametrize(
    "block",
    [
        {"mean": "abc", "std": 1.0, "lo": 0.0, "hi": 1.0},
        {"mean": 0.0, "std": 1.0, "lo": 0.0},
        {"mean": float("nan"), "std": 1.0, "lo": 0.0, "hi": 1.0},
        {"mean": 0.0, "std": -1.0, "lo": 0.0, "hi": 1.0},
        {"mean": 0.0, "std": 1.0, "lo": 2.0, "hi": 1.0},
        {"mean": True, "std": 1.0, "lo": 0.0, "hi": 1.0},
        [1, 2, 3, 4],
        "stats",
    ],
)
def test_broken_intensity_block_is_one_line(block):
    with pytest.raises(ValueError, match="expected finite numbers mean, std >= 0") as info:
        IntensityStats.from_dict(block, "checkpoint m.ckpt: intensity")  # type: ignore[arg-type]
    assert _one_line(info).startswith("checkpoint m.ckpt: intensity")
    ok = {"mean": -700, "std": 200.0, "lo": -1000.0, "hi": 100.0}
    assert IntensityStats.from_dict(ok) == IntensityStats(-700.0, 200.0, -1000.0, 100.0)


def test_predict_with_a_broken_intensity_block_is_one_line(tmp_path, capsys):
    from rdcl.cli import main
    from rdcl.config import preset
    from rdcl.formats.checkpoint import FORMAT, save_checkpoint
    from rdcl.model import build_network

    cfg = preset("tiny3d")
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(
        ckpt,
        {
            "format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
            "step": 0, "model": build_network(cfg.model, kind="single").state_dict(),
            "optimizer": None, "rng": None, "intensity": {"mean": "abc", "std": 1.0},
            "dataset": {"name": "t", "dim": 3},
        },
    )  # fmt: skip
    src = tmp_path / "a.nii.gz"
    write_image(np.full((16, 32, 32), -800, np.int16), GEOM, src)
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "-i", str(src), "-o", str(out), "-m", str(ckpt), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected finite numbers mean" in err[0], err
    assert not out.exists()
