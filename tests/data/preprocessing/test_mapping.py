"""One intensity mapping for every set of a run (rdcl.data.preprocessing.mapping, issue 17 item 1).

The same HU value must reach G as the same network input from the COVID set and from each
non-COVID set: through ``rdcl prepare``, preprocessing, the cache and prediction.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from rdcl.config import preset
from rdcl.data import io
from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.prepare import HU_WINDOW, prepare, prepare_native
from rdcl.data.datasets.slices import prepare_slices
from rdcl.data.io import Geometry, write_image
from rdcl.data.preprocessing.mapping import check_one_mapping, input_mapping
from rdcl.data.preprocessing.preprocess import preprocess_dataset
from rdcl.errors import DatasetError
from rdcl.inference.predictor import Predictor

GEOM = Geometry((2.0, 0.8, 0.8), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
HU = np.array([-1250.0, -1000.0, -850.0, -500.0, -120.0, 0.0, 40.0, 250.0])
"""HU values written into row (1, 2, :) of every test image."""
RADIO = "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm"


def _volume(fill: float = -1000.0) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((3, 6, 8), fill, np.float32)
    image[1, 2, :] = HU
    label = np.zeros((3, 6, 8), np.uint8)
    label[1, 3:5, 2:6] = 1
    return image, label


def _raw_sets(root) -> dict[str, object]:
    """Raw COVID-19-CT-Seg (a HU coronacases volume and a [0, 255] radiopaedia one), MSD Task06
    (HU, modality CT), NSCLC effusion (HU) and 3D nodule volumes for ``prepare slices``."""
    image, label = _volume()
    covid = root / "covid"
    write_image(image.astype(np.int16), GEOM, covid / "COVID-19-CT-Seg_20cases" /
                "coronacases_org_001.nii.gz")  # fmt: skip
    scaled = (image - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0]) * 255.0
    write_image(scaled.astype(np.float32), GEOM, covid / "COVID-19-CT-Seg_20cases" /
                f"{RADIO}.nii.gz")  # fmt: skip
    for name in ("coronacases_001", "radiopaedia_4_85506_1"):
        write_image(label, GEOM, covid / "Infection_Mask" / f"{name}.nii.gz")
    msd = root / "msd"
    write_image(image.astype(np.int16), GEOM, msd / "imagesTr" / "lung_001.nii.gz")
    write_image(label, GEOM, msd / "labelsTr" / "lung_001.nii.gz")
    training = [{"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"}]
    (msd / "dataset.json").write_text(
        json.dumps({"name": "Lung", "modality": {"0": "CT"}, "training": training})
    )
    nsclc = root / "nsclc"
    write_image(image.astype(np.int16), GEOM, nsclc / "CT" / "LUNG1-001.nii.gz")
    write_image(label * 255, GEOM, nsclc / "Effusions" / "LUNG1-001_effusion_first.nii.gz")
    nodules = root / "nodules"
    write_image(image.astype(np.int16), GEOM, nodules / "images" / "n1.nii.gz")
    write_image(label, GEOM, nodules / "masks" / "n1.nii.gz")
    return {"covid": covid, "msd": msd, "nsclc": nsclc, "nodules": nodules}


class _InputAsProbability(nn.Module):
    """A network whose sigmoid output is its input: the predictor's probabilities are then the
    network input it built from the raw image (Gaussian-weighted tiles of a position-independent
    network average to the same value)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = x.clamp(1e-6, 1 - 1e-6)
        return [torch.log(p / (1 - p))]


def _prepared(tmp_path):
    raw = _raw_sets(tmp_path / "raw")
    out = tmp_path / "prepared"
    return {
        "covid": prepare("covid19-ct-seg", raw["covid"], out / "covid"),
        "msd": prepare("msd-lung", raw["msd"], out / "msd"),
        "nsclc": prepare("nsclc-effusion", raw["nsclc"], out / "nsclc"),
        "slices": prepare_slices(raw["nodules"], out / "slices", lesion="nodule"),
        "msd_raw": load_dataset(raw["msd"]),  # the published layout read directly
    }


def test_same_hu_same_input_through_prepare_cache_and_prediction(tmp_path):
    specs = _prepared(tmp_path)
    cfg = preset("tiny3d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=None))
    volumes = [specs[k] for k in ("covid", "msd", "nsclc", "msd_raw")]
    mappings = check_one_mapping([*volumes, specs["slices"]], cfg.data)
    assert {(m.normalization, m.window) for m in mappings} == {("window", HU_WINDOW)}
    expected = (np.clip(HU, *HU_WINDOW) - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])
    seen = {}
    for key, spec in specs.items():
        cached = preprocess_dataset(spec, cfg.data, tmp_path / "cache" / key)
        for i, name in enumerate(cached.names):
            image = np.asarray(cached[i][0][0])
            row = image[2, :] if image.ndim == 2 else image[1, 2, :]
            seen[(key, name)] = row
            # radiopaedia went through [0, 255] and int16 HU: within 1 HU of the window's 1500
            np.testing.assert_allclose(row, expected, atol=1.0 / 1500, err_msg=f"{key} {name}")
        if spec.dim == 3:  # prediction maps a raw HU volume exactly as the cache did
            pred = Predictor(
                _InputAsProbability(),
                config=cfg,
                intensity=cached.stats,
                device="cpu",
                normalization=cached.normalization,
                window=cached.window,
            )
            raw_image, _, geom = load_case(spec.cases[0])
            prob = pred.predict_probabilities(raw_image, geom)
            np.testing.assert_allclose(prob[1, 2, :], expected, atol=1e-5, err_msg=key)
    assert len(seen) == 6  # two COVID volumes, MSD prepared and raw, NSCLC, one nodule slice


def test_a_set_declaring_another_mapping_is_refused(tmp_path):
    specs = _prepared(tmp_path)
    cfg = preset("tiny3d").data
    other = dataclasses.replace(specs["msd"], normalization="ct")
    with pytest.raises(DatasetError, match="G must see one intensity mapping"):
        check_one_mapping([specs["covid"], other], cfg)
    narrow = dataclasses.replace(
        specs["nsclc"],
        cases=tuple(dataclasses.replace(c, window=(-160.0, 240.0)) for c in specs["nsclc"].cases),
    )
    with pytest.raises(DatasetError, match=r"NSCLC_effusion: window \(-160, 240\) HU"):
        check_one_mapping([specs["covid"], narrow], cfg)


def test_mapped_sets_declare_their_mapping_and_need_the_window_rule(tmp_path):
    patches = tmp_path / "p.npz"
    rng = np.random.default_rng(0)
    labels = (rng.random((4, 1, 16, 16)) > 0.8).astype(np.uint8)
    np.savez(patches, images=rng.random((4, 1, 16, 16)).astype(np.float32), labels=labels)
    spec = load_dataset(patches)
    assert spec.units == "mapped" and input_mapping(spec, preset("tiny2d").data).window == (0, 1)
    cfg = preset("tiny2d").data
    assert [m.units for m in check_one_mapping([spec], cfg)] == ["mapped"]
    with pytest.raises(DatasetError, match="can share only a window mapping"):
        check_one_mapping([spec], dataclasses.replace(cfg, normalization="ct"))
    undeclared = dataclasses.replace(spec, normalization=None)
    with pytest.raises(DatasetError, match="declares no mapping"):
        check_one_mapping([undeclared], cfg)


def test_prepare_native_declares_spacing_and_keeps_the_mapping(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.random((3, 1, 12, 10)).astype(np.float32)
    labels = (rng.random((3, 1, 12, 10)) > 0.7).astype(np.uint8)
    np.savez(tmp_path / "train_patches.npz", images=images, labels=labels)
    np.savez(tmp_path / "test_patches.npz", images=images[:2], labels=labels[:2])
    spec = prepare_native(
        tmp_path, tmp_path / "out", spacing=(2.0, 2.0), splits=("train", "test"), lesion="tumour"
    )
    assert len(spec.cases) == 5 and spec.units == "mapped" and spec.normalization == "window"
    assert spec.cases[0].window == (0.0, 1.0) and spec.lesion == "tumour"
    image, label, geom = load_case(spec.cases[0])
    assert geom.spacing == pytest.approx((2.0, 2.0))
    np.testing.assert_array_equal(label, labels[0, 0])  # the train split first
    np.testing.assert_allclose(image, images[0, 0])
    _, info = io.read_info(tmp_path / "out" / "imagesTr" / io.channel_file_name(spec.cases[0].name))
    assert info.spacing == pytest.approx((2.0, 2.0))  # the files now carry the spacing
    with pytest.raises(Exception, match="expected 2 positive voxel sizes"):
        prepare_native(tmp_path, tmp_path / "bad", spacing=(2.0, 2.0, 2.0))


def test_declared_spacing_from_dataset_json_and_conflicts(tmp_path):
    root = tmp_path / "ds"
    image = np.zeros((12, 10), np.float32)
    label = np.zeros((12, 10), np.uint8)
    label[3:6, 3:6] = 1
    geom2 = Geometry((1.0, 1.0), (0.0, 0.0), (1, 0, 0, 1))
    write_image(image, geom2, root / "imagesTr" / "a_0000.nii.gz")
    write_image(label, geom2, root / "labelsTr" / "a.nii.gz")
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1},
            "file_ending": ".nii.gz", "rdcl": {"spacing": [0.7, 0.7]}}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = load_dataset(root)
    assert load_case(spec.cases[0])[2].spacing == (0.7, 0.7)
    half = Geometry((0.5, 0.5), (0.0, 0.0), (1, 0, 0, 1))
    write_image(image, half, root / "imagesTr" / "a_0000.nii.gz", overwrite=True)
    write_image(label, half, root / "labelsTr" / "a.nii.gz", overwrite=True)
    with pytest.raises(DatasetError, match=r"carries spacing \(0.5, 0.5\) mm but the dataset"):
        load_case(load_dataset(root).cases[0])
    meta["rdcl"]["spacing"] = [0.7, -1]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"rdcl\.spacing"):
        load_dataset(root)


def test_prepare_cli_native_and_msd_patches(tmp_path, capsys):
    from rdcl.cli import main

    rng = np.random.default_rng(2)
    src = tmp_path / "patches"
    src.mkdir()
    labels = (rng.random((2, 1, 8, 8)) > 0.6).astype(np.uint8)
    np.savez(src / "val_patches.npz", images=rng.random((2, 1, 8, 8)).astype(np.float32),
             labels=labels)  # fmt: skip
    np.savez(src / "test_patches.npz", images=rng.random((1, 1, 8, 8)).astype(np.float32),
             labels=labels[:1])  # fmt: skip
    assert main(["prepare", "msd-patches", "--src", str(src), "--out", str(tmp_path / "m")]) == 0
    spec = load_dataset(tmp_path / "m")
    assert len(spec.cases) == 3 and spec.lesion == "tumour"  # both files, as training cases
    assert load_case(spec.cases[0])[2].spacing == pytest.approx((2.0, 2.0))
    out = tmp_path / "n"
    args = ["prepare", "native", "--src", str(src), "--out", str(out), "--spacing", "0.5", "0.5"]
    assert main(args) == 0
    assert load_case(load_dataset(out).cases[0])[2].spacing == pytest.approx((0.5, 0.5))
    capsys.readouterr()
    bad = ["prepare", "native", "--src", str(src), "--out", str(tmp_path / "b"), "--spacing", "1"]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 2 positive voxel sizes" in err[0]
    assert not (tmp_path / "b").exists()
    wrong = ["prepare", "slices", "--src", str(src), "--out", str(tmp_path / "c"), "--spacing", "1"]
    assert main(wrong) == 2
    assert "--spacing is for the 'native' layout" in capsys.readouterr().err
