from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rdcl.data.datasets.layout import DatasetError, load_case, load_dataset
from rdcl.data.io import Geometry, write_image

# --- layout detection -------------------------------------------------------------------------


def test_nnunet_native_layout(nnunet_dir, geom3):
    spec = load_dataset(nnunet_dir)
    assert spec.layout == "nnunet"
    assert spec.name == "Test" and spec.dim == 3 and spec.normalization is None
    assert spec.lesion == "tumour"
    assert [c.name for c in spec.cases] == ["case000", "case001", "case002"]
    image, label, geom = load_case(spec.cases[1])
    assert image.dtype == np.float32 and image.shape == (6, 8, 10)
    assert label.dtype == np.uint8 and int(label.sum()) == 2 * 3 * 3
    assert geom.matches(geom3, atol=1e-6)


def test_nnunet_test_split_has_optional_labels(nnunet_dir):
    spec = load_dataset(nnunet_dir, split="test")
    assert [c.name for c in spec.cases] == ["case100"]
    image, label, _ = load_case(spec.cases[0])
    assert label is None and image.shape == (6, 8, 10)


def test_nnunet_two_value_label_map(nnunet_dir, geom3):
    # labels {"background": 0, "lesion": 2}: 2 is mapped to 1.
    meta = json.loads((nnunet_dir / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "lesion": 2}
    (nnunet_dir / "dataset.json").write_text(json.dumps(meta))
    lab = np.zeros((6, 8, 10), np.uint8)
    lab[0, 0, :3] = 2
    write_image(lab, geom3, nnunet_dir / "labelsTr" / "case000.nii.gz", overwrite=True)
    _, label, _ = load_case(load_dataset(nnunet_dir).cases[0])
    assert label.max() == 1 and int(label.sum()) == 3


def test_msd_training_list(tmp_path, geom3, make_ct):
    rng = np.random.default_rng(1)
    for name in ("lung_001", "lung_003"):
        image, label = make_ct(rng)
        write_image(image, geom3, tmp_path / "imagesTr" / f"{name}.nii.gz")
        write_image(label, geom3, tmp_path / "labelsTr" / f"{name}.nii.gz")
    meta = {
        "name": "Lung",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "cancer"},
        "training": [
            {"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"}
            for n in ("lung_001", "lung_003")
        ],
        "test": [],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    spec = load_dataset(tmp_path)
    assert spec.layout == "msd" and spec.normalization is None and spec.units == "hu"
    assert [c.name for c in spec.cases] == ["lung_001", "lung_003"]
    assert load_case(spec.cases[1])[1].sum() == 18


def _write_covid(root, mask_folder, values, geom3, make_ct):
    rng = np.random.default_rng(2)
    images = root / "COVID-19-CT-Seg_20cases"
    stems = {
        "coronacases_org_001": "coronacases_001",
        "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm": "radiopaedia_4_85506_1",
        "coronacases_org_002": None,  # no mask: skipped with a warning
    }
    for img_stem, mask_stem in stems.items():
        image, label = make_ct(rng)
        write_image(image, geom3, images / f"{img_stem}.nii.gz")
        if mask_stem:
            lab = np.zeros_like(label)
            for v, sl in zip(
                values, (np.s_[0, :2], np.s_[1, :2], np.s_[2:4, 3:6, 4:7]), strict=True
            ):
                lab[sl] = v
            write_image(lab, geom3, root / mask_folder / f"{mask_stem}.nii.gz")


def test_covid19_ct_seg_infection_mask(tmp_path, caplog, geom3, make_ct):
    _write_covid(tmp_path, "Infection_Mask", (0, 0, 1), geom3, make_ct)
    with caplog.at_level(logging.WARNING):
        spec = load_dataset(tmp_path)
    assert "coronacases_org_002" in caplog.text
    assert spec.layout == "covid19_ct_seg" and spec.normalization == "window"
    windows = {c.name: c.window for c in spec.cases}
    # coronacases are HU and need the window; radiopaedia are already scaled to [0, 255].
    assert windows == {"coronacases_001": (-1250.0, 250.0), "radiopaedia_4_85506_1": (0.0, 255.0)}
    assert int(load_case(spec.cases[0])[1].sum()) == 18


def test_covid19_ct_seg_lung_and_infection_mask(tmp_path, geom3, make_ct):
    # 1/2 = left/right lung -> 0, 3 = infection -> 1.
    _write_covid(tmp_path, "Lung_and_Infection_Mask", (1, 2, 3), geom3, make_ct)
    spec = load_dataset(tmp_path)
    _, label, _ = load_case(spec.cases[0])
    assert label.max() == 1 and int(label.sum()) == 18


def _write_png_pairs(root):
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in (1, 2, 5):
        img = rng.integers(0, 256, size=(12, 16)).astype(np.uint8)
        write_image(img, Geometry.default(2), root / "images" / f"tr_im_{i:04d}.png")
    for i in (1, 2, 7):
        m = np.zeros((12, 16), np.uint8)
        m[3 : 3 + i, 4:8] = 255
        rgb = sitk.GetImageFromArray(np.stack([m, m, m], axis=-1), isVector=True)
        sitk.WriteImage(rgb, str(root / "masks" / f"tr_mask_{i:04d}.png"))


def test_paired_png_folders(tmp_path, caplog):
    _write_png_pairs(tmp_path)
    with caplog.at_level(logging.WARNING):
        spec = load_dataset(tmp_path)
    assert "tr_im_0005" in caplog.text and "tr_mask_0007" in caplog.text
    assert spec.layout == "paired" and spec.dim == 2 and spec.normalization == "window"
    assert [c.name for c in spec.cases] == ["tr_im_0001", "tr_im_0002"]
    assert spec.cases[0].window == (0.0, 255.0)
    _, label, _ = load_case(spec.cases[1])
    # 255 -> 1, three identical channels -> one.
    assert label.shape == (12, 16) and set(np.unique(label)) == {0, 1}
    assert int(label.sum()) == 2 * 4


def test_paired_nifti_with_labels_folder(tmp_path, geom3, make_ct):
    rng = np.random.default_rng(4)
    for name in ("LIDC-IDRI-0001_R_1", "LIDC-IDRI-0003_R_2"):
        image, label = make_ct(rng)
        write_image(image, geom3, tmp_path / "images" / f"{name}.nii.gz")
        write_image(label, geom3, tmp_path / "labels" / f"{name}.nii.gz")
    spec = load_dataset(tmp_path)
    assert spec.dim == 3 and spec.normalization is None
    assert [c.name for c in spec.cases] == ["LIDC-IDRI-0001_R_1", "LIDC-IDRI-0003_R_2"]


def _write_npz(path, n=4, lo=0.0, hi=1.0):
    rng = np.random.default_rng(5)
    images = rng.uniform(lo, hi, size=(n, 1, 8, 8)).astype(np.float32)
    labels = np.zeros((n, 1, 8, 8), np.float64)
    labels[:, 0, 2:4, 2:5] = 1.0
    np.savez(path, images=images, labels=labels)
    return images


def test_npz_patches(tmp_path):
    images = _write_npz(tmp_path / "val_patches.npz", n=3)
    _write_npz(tmp_path / "test_patches.npz", n=2)
    spec = load_dataset(tmp_path)
    assert spec.layout == "npz" and spec.dim == 2 and spec.normalization == "window"
    assert len(spec.cases) == 3  # test_patches.npz is held out of the training split
    held_out = load_dataset(tmp_path, split="test")
    assert [c.name for c in held_out.cases] == ["test_patches_0000", "test_patches_0001"]
    assert len(load_dataset(tmp_path / "test_patches.npz").cases) == 2  # a file is used as given
    case = next(c for c in spec.cases if c.name == "val_patches_0002")
    image, label, geom = load_case(case)
    np.testing.assert_array_equal(image, images[2, 0])
    assert label.dtype == np.uint8 and int(label.sum()) == 6 and geom.dim == 2
    assert load_dataset(tmp_path / "val_patches.npz").cases[0].window == (0.0, 1.0)


# --- bad input: one DatasetError line each ----------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_label_values_name_file_and_values(nnunet_dir, geom3):
    lab = np.zeros((6, 8, 10), np.uint8)
    lab[0, 0, 0], lab[1, 1, 1] = 2, 7
    write_image(lab, geom3, nnunet_dir / "labelsTr" / "case001.nii.gz", overwrite=True)
    spec = load_dataset(nnunet_dir)
    with pytest.raises(DatasetError) as exc:
        load_case(spec.cases[1])
    msg = _one_line(exc)
    assert "case001.nii.gz" in msg and "[0, 2, 7]" in msg


def test_bad_png_mask_value(tmp_path):
    _write_png_pairs(tmp_path)
    m = np.zeros((12, 16), np.uint8)
    m[0, 0] = 128
    write_image(m, Geometry.default(2), tmp_path / "masks" / "tr_mask_0002.png", overwrite=True)
    spec = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"tr_mask_0002.png: label values \[0, 128\]"):
        load_case(spec.cases[1])


def test_shape_mismatch(nnunet_dir, geom3):
    write_image(
        np.zeros((6, 8, 9), np.uint8),
        geom3,
        nnunet_dir / "labelsTr" / "case000.nii.gz",
        overwrite=True,
    )
    with pytest.raises(DatasetError, match=r"shape mismatch.*\(6, 8, 10\).*\(6, 8, 9\)"):
        load_case(load_dataset(nnunet_dir).cases[0])


def test_geometry_mismatch(nnunet_dir, geom3, make_ct):
    other = Geometry(spacing=(2.5, 0.8, 0.9), origin=geom3.origin, direction=geom3.direction)
    _, label = make_ct(np.random.default_rng(0))
    write_image(label, other, nnunet_dir / "labelsTr" / "case000.nii.gz", overwrite=True)
    with pytest.raises(DatasetError, match="geometry mismatch") as exc:
        load_case(load_dataset(nnunet_dir).cases[0])
    _one_line(exc)


def test_nan_voxels(tmp_path, geom3, make_ct):
    # ITK's NIfTI reader turns NaN into 0, so the MHA format carries the bad voxels here.
    image, label = make_ct(np.random.default_rng(6))
    image = image.astype(np.float32)
    image[1, 2, 3], image[4, 4, 4] = np.nan, np.inf
    write_image(image, geom3, tmp_path / "images" / "a.mha")
    write_image(label, geom3, tmp_path / "masks" / "a.mha")
    with pytest.raises(DatasetError, match=r"a\.mha: 2 NaN/inf voxels") as exc:
        load_case(load_dataset(tmp_path).cases[0])
    _one_line(exc)


def test_nan_in_npz_patch(tmp_path):
    images = np.full((2, 1, 8, 8), 0.5, np.float32)
    images[1, 0, 3, 3] = np.nan
    np.savez(tmp_path / "p.npz", images=images, labels=np.zeros((2, 1, 8, 8)))
    spec = load_dataset(tmp_path)
    assert load_case(spec.cases[0])[0].shape == (8, 8)
    with pytest.raises(DatasetError, match=r"p\.npz\[1\]: 1 NaN/inf voxels"):
        load_case(spec.cases[1])


def test_4d_input(nnunet_dir):
    import SimpleITK as sitk

    vols = [sitk.GetImageFromArray(np.zeros((6, 8, 10), np.int16)) for _ in range(2)]
    path = nnunet_dir / "imagesTr" / "case001_0000.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(vols), str(path))
    spec = load_dataset(nnunet_dir)
    with pytest.raises(DatasetError, match="expected a 2D or 3D image, found 4D") as exc:
        load_case(spec.cases[1])
    _one_line(exc)


def test_corrupt_file(nnunet_dir):
    (nnunet_dir / "labelsTr" / "case001.nii.gz").write_bytes(b"not a nifti file at all")
    with pytest.raises(DatasetError, match=r"case001\.nii\.gz") as exc:
        load_case(load_dataset(nnunet_dir).cases[1])
    _one_line(exc)


def test_missing_training_label(nnunet_dir):
    (nnunet_dir / "labelsTr" / "case001.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"label not found.*case001"):
        load_dataset(nnunet_dir)


def test_empty_datasets(tmp_path):
    (tmp_path / "a" / "imagesTr").mkdir(parents=True)
    (tmp_path / "a" / "labelsTr").mkdir()
    (tmp_path / "a" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(DatasetError, match="empty dataset"):
        load_dataset(tmp_path / "a")
    (tmp_path / "b" / "images").mkdir(parents=True)
    (tmp_path / "b" / "masks").mkdir()
    with pytest.raises(DatasetError, match="empty dataset"):
        load_dataset(tmp_path / "b")


def test_unknown_layout_and_missing_root(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        load_dataset(tmp_path / "stuff")
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "nope")


def test_npz_bad_shapes(tmp_path):
    np.savez(tmp_path / "p.npz", images=np.zeros((2, 3, 8, 8), np.float32) + 0.5)
    with pytest.raises(DatasetError, match=r"expected images \(N, 1, H, W\).*\(2, 3, 8, 8\)"):
        load_dataset(tmp_path)
    np.savez(
        tmp_path / "p.npz",
        images=np.full((2, 1, 8, 8), 0.5, np.float32),
        labels=np.zeros((2, 1, 8, 7)),
    )
    with pytest.raises(DatasetError, match="image/label shape mismatch"):
        load_dataset(tmp_path)


def test_msd_listed_file_missing(tmp_path):
    meta = {"training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"not found: .*imagesTr/a\.nii\.gz"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot parse"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("window", [[250, -1250], [0, 0], [1], "lung"])
def test_nnunet_bad_window_is_a_dataset_error(nnunet_dir, window):
    # An inverted or empty window used to be accepted and silently inverted or divided by zero
    # in the window normalisation.
    meta = json.loads((nnunet_dir / "dataset.json").read_text())
    meta["rdcl"]["window"] = window
    (nnunet_dir / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"window.*expected \(low, high\) with low < high"):
        load_dataset(nnunet_dir)
