"""Preparation of the paper's published layouts into the native layout
(rdcl.data.datasets.prepare)."""

from __future__ import annotations

import json
import tarfile
import zipfile

import numpy as np
import pytest

from rdcl.cli import main
from rdcl.data.datasets import prepare as prepare_module
from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.prepare import (
    HU_WINDOW,
    LAYOUTS,
    PREPARERS,
    extract_archive,
    prepare,
    prepare_layout,
    radiopaedia_to_hu,
)
from rdcl.data.datasets.spec import DatasetError
from rdcl.data.io import Geometry, read_image, write_image
from rdcl.errors import RdclInputError

GEOM = Geometry((2.5, 0.75, 0.8), (-10.0, 5.0, 100.0), (1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
RADIO = "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm"


def _covid_src(root, masks: str):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1200, 200, (3, 6, 7)).astype(np.int16)
    scaled = np.linspace(0, 255, 3 * 6 * 7).reshape(3, 6, 7).astype(np.float32)
    write_image(hu, GEOM, root / "COVID-19-CT-Seg_20cases" / "coronacases_org_001.nii.gz")
    write_image(scaled, GEOM, root / "COVID-19-CT-Seg_20cases" / f"{RADIO}.nii.gz")
    lab = np.zeros((3, 6, 7), np.uint8)
    lab[1, 2:4, 2:5] = 1
    if masks == "Lung_and_Infection_Mask":  # 1/2 lungs, 3 infection
        lab = np.where(lab == 1, 3, 0).astype(np.uint8)
        lab[0, :2, :] = 1
        lab[2, :2, :] = 2
    for name in ("coronacases_001", "radiopaedia_4_85506_1"):
        write_image(lab, GEOM, root / masks / f"{name}.nii.gz")
    return hu, scaled


@pytest.mark.parametrize("masks", ["Infection_Mask", "Lung_and_Infection_Mask"])
def test_covid19_ct_seg(tmp_path, masks):
    hu, scaled = _covid_src(tmp_path / "src", masks)
    spec = prepare("covid19-ct-seg", tmp_path / "src", tmp_path / "out")
    assert sorted(c.name for c in spec.cases) == ["coronacases_001", "radiopaedia_4_85506_1"]
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["rdcl"]["window"] == [-1250.0, 250.0] and meta["rdcl"]["normalization"] == "window"
    for case in spec.cases:
        image, label, geom = load_case(case)
        assert geom.matches(GEOM, atol=1e-6)  # spacing, origin, direction kept
        assert set(np.unique(label)) == {0, 1} and int(label.sum()) == 6  # only infection
        if case.name.startswith("radiopaedia"):  # [0, 255] mapped back onto [-1250, 250] HU
            assert image.min() == -1250 and image.max() == 250
            assert np.abs(image - radiopaedia_to_hu(scaled)).max() <= 0.5
        else:
            np.testing.assert_array_equal(image, hu)
    assert read_image(tmp_path / "out/imagesTr/coronacases_001_0000.nii.gz")[0].dtype == np.int16


def test_covid19_ct_seg_refuses_a_folder_without_masks(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetError, match="Infection_Mask"):
        prepare("covid19-ct-seg", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_msd_lung(tmp_path):
    root = tmp_path / "raw" / "Task06_Lung"
    img = np.full((4, 5, 6), -800, np.int16)
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[2, 2, 2] = 1
    for n in ("lung_001", "lung_003"):
        write_image(img, GEOM, root / "imagesTr" / f"{n}.nii.gz")
        write_image(lab, GEOM, root / "labelsTr" / f"{n}.nii.gz")
    (root / "imagesTr" / "._lung_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    training = [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"}
                for n in ("lung_001", "lung_003")]  # fmt: skip
    (root / "dataset.json").write_text(json.dumps({"name": "Lung", "modality": {"0": "CT"},
                                                   "training": training}))  # fmt: skip
    spec = prepare("msd-lung", tmp_path / "raw", tmp_path / "out")
    assert [c.name for c in spec.cases] == ["lung_001", "lung_003"]
    assert (tmp_path / "out/imagesTr/lung_001_0000.nii.gz").is_file()
    assert spec.normalization == "window" and spec.layout == "nnunet"
    assert spec.cases[0].window == HU_WINDOW and spec.units == "hu"
    image, label, geom = load_case(spec.cases[0])
    assert geom.matches(GEOM, atol=1e-6) and int(label.sum()) == 1 and image.min() == -800


def test_nsclc_effusion(tmp_path):
    src = tmp_path / "src"
    img = np.full((3, 4, 4), -50, np.int16)
    eff = np.zeros((3, 4, 4), np.uint8)
    eff[1, 1:3, 1:3] = 255
    write_image(img, GEOM, src / "CT" / "LUNG1-001.nii.gz")
    first = src / "Effusions" / "LUNG1-001" / "LUNG1-001_effusion_first_reviewer.nii.gz"
    write_image(eff, GEOM, first)
    write_image(eff, GEOM, src / "Effusions" / "LUNG1-002_effusion_first_reviewer.nii.gz")  # no CT
    spec = prepare("nsclc-effusion", src, tmp_path / "out")
    assert [c.name for c in spec.cases] == ["LUNG1-001"]
    _, label, geom = load_case(spec.cases[0])
    assert int(label.sum()) == 4 and label.max() == 1 and geom.matches(GEOM, atol=1e-6)
    assert spec.normalization == "window" and spec.cases[0].window == HU_WINDOW


def test_prepare_cli_one_line_errors_and_no_overwrite(tmp_path, capsys):
    src = tmp_path / "src"
    _covid_src(src, "Infection_Mask")
    out = tmp_path / "out"
    assert main(["prepare", "covid19-ct-seg", "--src", str(src), "--out", str(out)]) == 0
    assert len(load_dataset(out).cases) == 2
    capsys.readouterr()
    assert main(["prepare", "covid19-ct-seg", "--src", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["prepare", "nope", "--src", str(src), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown layout" in capsys.readouterr().err
    assert main(["prepare", "msd-lung", "--src", str(src), "--out", str(src / "x")]) == 2
    assert "outside --src" in capsys.readouterr().err


def test_prepare_layout_dispatches_each_layout(tmp_path, monkeypatch):
    """``prepare_layout`` (what ``rdcl prepare`` runs) calls one converter per layout, with the
    options that layout takes (``spacing`` as a tuple, for ``native`` only)."""
    calls = []

    def recorder(name):
        def convert(*args, **kwargs):
            calls.append((name, args, kwargs))
            return "spec"

        return convert

    for name in ("prepare", "prepare_slices", "prepare_msd_patches", "prepare_native"):
        monkeypatch.setattr(prepare_module, name, recorder(name))
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    assert LAYOUTS == (*PREPARERS, "msd-patches", "slices", "native")
    for layout in PREPARERS:
        assert prepare_layout(layout, src, out, overwrite=True) == "spec"
        assert calls.pop() == ("prepare", (layout, src, out), {"overwrite": True})
    prepare_layout("msd-patches", str(src), str(out))
    assert calls.pop() == ("prepare_msd_patches", (src, out), {"overwrite": False})
    prepare_layout("slices", src, out, max_per_case=3, lesion="nodule", overwrite=True)
    want = {"max_per_case": 3, "lesion": "nodule", "overwrite": True}
    assert calls.pop() == ("prepare_slices", (src, out), want)
    prepare_layout("native", src, out, spacing=[0.5, 0.7])
    assert calls.pop() == (
        "prepare_native",
        (src, out),
        {"spacing": (0.5, 0.7), "overwrite": False},
    )
    prepare_layout("native", src, out)
    assert calls.pop() == ("prepare_native", (src, out), {"spacing": None, "overwrite": False})
    assert calls == []


def test_prepare_layout_refuses_before_reading(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    with pytest.raises(RdclInputError) as exc:  # checked before the folders are looked at
        prepare_layout("nope", tmp_path / "missing", tmp_path / "out")
    assert str(exc.value) == (
        "unknown layout 'nope'; expected one of ['covid19-ct-seg', 'msd-lung', 'nsclc-effusion', "
        "'msd-patches', 'slices', 'native']"
    )
    nested = ((src, src), (src / "x", src), (src, src / "sub"), (src / "sub" / "..", src))
    for out, source in nested:
        with pytest.raises(RdclInputError) as exc:
            prepare_layout("msd-lung", source, out)
        assert str(exc.value) == f"--out {out} must lie outside --src {source}"
    with pytest.raises(RdclInputError) as exc:
        prepare_layout("slices", src, tmp_path / "out", spacing=(1.0,))
    assert str(exc.value) == (
        "--spacing is for the 'native' layout (files without a spacing); found it with 'slices'"
    )
    missing = tmp_path / "missing"
    for layout in ("slices", "covid19-ct-seg"):
        with pytest.raises(FileNotFoundError) as exc:
            prepare_layout(layout, missing, tmp_path / "out")
        assert str(exc.value) == f"source folder not found: {missing}"
    with pytest.raises(DatasetError) as exc:
        prepare_layout("native", missing, tmp_path / "out", spacing=(1.0, 1.0))
    assert str(exc.value) == f"dataset not found: {missing}"
    assert not (tmp_path / "out").exists()


def test_extract_archive_refuses_paths_outside(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DatasetError, match="outside"):
        extract_archive(bad, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()
    good = tmp_path / "Task06_Lung.tar"
    (tmp_path / "t" / "Task06_Lung").mkdir(parents=True)
    (tmp_path / "t" / "Task06_Lung" / "dataset.json").write_text("{}")
    with tarfile.open(good, "w") as tf:
        tf.add(tmp_path / "t" / "Task06_Lung", arcname="Task06_Lung")
    dest = extract_archive(good, tmp_path / "raw" / "Task06_Lung")
    assert (dest / "dataset.json").is_file()  # the archive's own top folder is not doubled


def test_slices_from_3d_pairs(tmp_path):
    from rdcl.data.datasets.slices import lesion_slices, slice_geometry

    src = tmp_path / "src"
    img = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7) - 100
    lab = np.zeros((5, 6, 7), np.uint8)
    lab[1, 1:3, 1:3] = 1
    lab[2, 1:5, 1:5] = 1  # the largest slice
    lab[3, 2, 2] = 1
    write_image(img, GEOM, src / "lung1_image.nrrd")
    write_image(lab, GEOM, src / "lung1_label.nrrd")
    assert lesion_slices(lab, 1) == [2] and lesion_slices(lab, 5) == [1, 2, 3]
    assert 2 in lesion_slices(lab, 2)
    many = np.zeros((12, 2, 2), np.uint8)
    many[:, 0, 0] = 1
    many[5] = 1
    assert len(lesion_slices(many, 10)) == 10 and 5 in lesion_slices(many, 3)
    out = tmp_path / "out"
    argv = ["prepare", "slices", "--src", str(src), "--out", str(out), "--max-per-case", "2"]
    assert main(argv) == 0
    spec = load_dataset(out)
    assert spec.dim == 2 and len(spec.cases) == 2 and "lung1_z002" in {c.name for c in spec.cases}
    z2 = next(c for c in spec.cases if c.name == "lung1_z002")
    image, label, geom = load_case(z2)
    np.testing.assert_array_equal(image, img[2])
    assert int(label.sum()) == 16
    assert geom.matches(slice_geometry(GEOM), atol=1e-6), (geom, slice_geometry(GEOM))
    assert geom.spacing == pytest.approx((0.75, 0.8))
    assert json.loads((out / "dataset.json").read_text())["rdcl"]["window"] == [-1250.0, 250.0]
