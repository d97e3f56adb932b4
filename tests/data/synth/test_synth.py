"""Synthetic CT phantoms: tissue HU, lesion placement and HU per kind, dataset layout, safety."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from rdcl.data.io import read_image
from rdcl.data.synth import (
    KINDS,
    default_spacing,
    synthesize_case,
    synthesize_dataset,
    synthesize_phantom,
)
from rdcl.data.synth import generate as generate_module
from rdcl.data.synth.phantom import MIXED_KINDS

SHAPES = {3: (24, 64, 64), 2: (96, 96)}
N_CASES = 6


@cache
def _phantoms(kind: str, dim: int) -> tuple:
    shape = SHAPES[dim]
    spacing = default_spacing(shape)
    return tuple(
        synthesize_phantom(kind, shape, spacing, np.random.default_rng(seed))
        for seed in range(N_CASES)
    )


def _core(mask: np.ndarray) -> np.ndarray:
    """The mask eroded by one voxel in-plane: voxels whose HU are not blurred with the lung."""
    cross = np.zeros((3, 3), bool)
    cross[1, :] = cross[:, 1] = True
    structure = cross[None] if mask.ndim == 3 else cross
    core = ndimage.binary_erosion(mask.astype(bool), structure)
    return core if core.any() else mask.astype(bool)


def test_default_spacing_is_anisotropic_and_scaled():
    # Field of view 320 x 409.6 x 409.6 mm (128 x 512 x 512 at (2.5, 0.8, 0.8)), never finer
    # than that: 320 / 32 = 10, 409.6 / 96 = 4.2667, 409.6 / 256 = 1.6.
    assert default_spacing((32, 96, 96)) == pytest.approx((10.0, 4.2667, 4.2667))
    assert default_spacing((128, 512, 512)) == (2.5, 0.8, 0.8)
    assert default_spacing((256, 1024, 1024)) == (2.5, 0.8, 0.8)
    assert default_spacing((256, 256)) == pytest.approx((1.6, 1.6))


@pytest.mark.parametrize("dim", [2, 3])
def test_deterministic_given_seed(dim):
    shape = SHAPES[dim]
    spacing = default_spacing(shape)
    a = synthesize_case("covid", shape, spacing, np.random.default_rng(7))
    b = synthesize_case("covid", shape, spacing, np.random.default_rng(7))
    c = synthesize_case("covid", shape, spacing, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [2, 3])
def test_types_shapes_and_binary_nonempty_masks(kind, dim):
    shape = SHAPES[dim]
    image, mask = synthesize_case(kind, shape, default_spacing(shape), np.random.default_rng(3))
    assert image.shape == shape and mask.shape == shape
    assert image.dtype == np.int16 and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}


@pytest.mark.parametrize("dim", [2, 3])
def test_tissue_hu(dim):
    for ph in _phantoms("tumour", dim)[:3]:
        image, lung, mask = ph.image, ph.lung.astype(bool), ph.mask.astype(bool)
        corner = image[..., :6, :6]  # outside the body ellipse
        assert abs(np.median(corner) + 1000) <= 10
        assert 8 <= corner.std() <= 25  # 10-20 HU noise
        assert abs(np.median(image[lung & ~mask]) + 850) <= 20
        body = image[~lung & (image > -900)]
        fat = np.mean((body > -130) & (body < -70))
        soft = np.mean((body > 15) & (body < 65))
        bone = np.mean(body > 400)
        assert fat > 0.03 and soft > 0.3 and 0.003 < bone < 0.2, (fat, soft, bone)
        assert 700 <= image.max() <= 1100  # rib/vertebral cortex


@pytest.mark.parametrize("dim", [2, 3])
def test_lung_vessels_brighter_than_parenchyma(dim):
    for ph in _phantoms("nodule", dim)[:3]:
        lung = ph.image[ph.lung.astype(bool) & (ph.mask == 0)]
        # vessels (~40 HU, partial volume) occupy a few percent of the lung
        assert 0.003 < np.mean(lung > -500) < 0.15


@pytest.mark.parametrize("dim", [2, 3])
def test_covid_ground_glass_with_consolidation(dim):
    medians, consolidated = [], []
    for ph in _phantoms("covid", dim):
        core = ph.image[_core(ph.mask)]
        assert np.mean((core >= -720) & (core <= 60)) >= 0.85
        medians.append(np.median(ph.image[ph.mask > 0]))
        consolidated.append(np.mean(core > -150))
    assert np.mean([-700 <= m <= -250 for m in medians]) >= 0.65, medians
    assert max(consolidated) > 0.05 and min(consolidated) < 0.6, consolidated


@pytest.mark.parametrize("dim", [2, 3])
def test_covid_bilateral_multifocal_peripheral(dim):
    phantoms = _phantoms("covid", dim)
    nx = SHAPES[dim][-1]
    both = [ph.mask[..., : nx // 2].any() and ph.mask[..., nx // 2 :].any() for ph in phantoms]
    assert np.mean(both) >= 0.8
    foci = [ndimage.label(ph.mask)[1] for ph in phantoms]
    assert np.mean([n >= 2 for n in foci]) >= 0.8, foci
    spacing = default_spacing(SHAPES[dim])
    for ph in phantoms:
        depth = ndimage.distance_transform_edt(ph.lung, sampling=spacing)
        lesion = ph.mask.astype(bool)
        assert lesion.sum() <= ph.lung.sum()
        assert not np.any(lesion & (ph.lung == 0))
        # most lesion voxels lie in the outer half of the lung (subpleural)
        assert np.mean(depth[lesion] <= 0.5 * depth.max()) >= 0.8
        assert np.median(depth[lesion]) < np.median(depth[ph.lung > 0])


@pytest.mark.parametrize("kind", ["tumour", "nodule"])
@pytest.mark.parametrize("dim", [2, 3])
def test_solid_lesions_hu(kind, dim):
    for ph in _phantoms(kind, dim):
        core = ph.image[_core(ph.mask)]
        assert 0 <= np.median(core) <= 60
        assert np.mean((core > -50) & (core < 110)) >= 0.9  # 0-60 HU +- noise


def test_nodules_smaller_than_tumours():
    def mean_size(kind):
        sizes = []
        for ph in _phantoms(kind, 3):
            labels = ndimage.label(ph.mask)[0]
            sizes += list(np.bincount(labels.ravel())[1:])
        return np.mean(sizes)

    assert mean_size("nodule") < 0.6 * mean_size("tumour")


@pytest.mark.parametrize("dim", [2, 3])
def test_effusion_dependent_crescent(dim):
    for ph in _phantoms("effusion", dim):
        core = ph.image[_core(ph.mask)]
        assert 0 <= np.median(core) <= 20
        fluid, lung = np.nonzero(ph.mask), np.nonzero(ph.lung)
        y_axis = dim - 2
        lo, hi = lung[y_axis].min(), lung[y_axis].max()
        # posterior (high y): the fluid sits in the back of the lung fields
        assert fluid[y_axis].mean() > lung[y_axis].mean() + 0.15 * (hi - lo)
        if dim == 3:  # and along the lung base (low z)
            assert fluid[0].mean() < lung[0].mean()


def test_mixed_draws_each_non_covid_kind():
    kinds = {
        synthesize_phantom("mixed", (64, 64), (6.4, 6.4), np.random.default_rng(s)).kind
        for s in range(12)
    }
    assert kinds == set(MIXED_KINDS)


def test_demo_geometry_is_a_miniature_chest():
    # Small field of view (77 mm): the anatomy scales to it and lesions still appear.
    ph = synthesize_phantom("covid", (32, 96, 96), (2.5, 0.8, 0.8), np.random.default_rng(0))
    assert ph.mask.any()
    assert abs(np.median(ph.image[(ph.lung > 0) & (ph.mask == 0)]) + 850) <= 20


@pytest.mark.parametrize(
    ("kind", "shape", "spacing", "match"),
    [
        ("flu", (64, 64), (1.0, 1.0), "kind"),
        ("covid", (64,), (1.0,), "shape"),
        ("covid", (64, 64), (1.0, 1.0, 1.0), "spacing"),
        ("covid", (16, 16), (1.0, 1.0), "at least"),
        ("covid", (64, 64), (0.0, 1.0), "positive"),
    ],
)
def test_bad_arguments(kind, shape, spacing, match):
    with pytest.raises(ValueError, match=match):
        synthesize_case(kind, shape, spacing, np.random.default_rng(0))


def test_dataset_layout_and_geometry_3d(tmp_path):
    out = synthesize_dataset(
        tmp_path / "ds",
        kind="covid",
        n_cases=2,
        n_test=1,
        shape=(12, 48, 48),
        spacing=(5.0, 1.5, 1.25),
        seed=3,
    )
    assert out == tmp_path / "ds"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert meta["rdcl"]["lesion"] == "covid"
    # HU phantoms declare no mapping of their own: the run's one rule maps every set
    assert "normalization" not in meta["rdcl"]
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "covid_000_0000.nii.gz",
        "covid_001_0000.nii.gz",
    ]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [
        "covid_000.nii.gz",
        "covid_001.nii.gz",
    ]
    assert [p.name for p in (out / "imagesTs").iterdir()] == ["covid_002_0000.nii.gz"]
    assert [p.name for p in (out / "labelsTs").iterdir()] == ["covid_002.nii.gz"]
    image, geom = read_image(out / "imagesTr" / "covid_001_0000.nii.gz")
    label, lgeom = read_image(out / "labelsTr" / "covid_001.nii.gz")
    assert image.shape == label.shape == (12, 48, 48)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert geom.spacing == pytest.approx((5.0, 1.5, 1.25))
    assert geom.matches(lgeom)
    # origin (x, y, z) centres the grid: -(n - 1) / 2 * spacing
    assert geom.origin == pytest.approx((-29.375, -35.25, -27.5))
    assert set(np.unique(label)) == {0, 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp folders left
    again = synthesize_dataset(
        tmp_path / "again",
        kind="covid",
        n_cases=2,
        shape=(12, 48, 48),
        spacing=(5.0, 1.5, 1.25),
        seed=3,
    )
    np.testing.assert_array_equal(
        read_image(again / "imagesTr" / "covid_001_0000.nii.gz")[0], image
    )


def test_dataset_2d_mixed(tmp_path):
    out = synthesize_dataset(tmp_path / "d2", kind="mixed", n_cases=3, dim=2, shape=(64, 64))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["rdcl"]["lesion"] == "mixed"
    assert set(meta["rdcl"]["synthetic"]["case_kinds"].values()) <= set(MIXED_KINDS)
    image, geom = read_image(out / "imagesTr" / "mixed_002_0000.nii.gz")
    label, _ = read_image(out / "labelsTr" / "mixed_002.nii.gz")
    assert image.shape == label.shape == (64, 64)
    assert geom.spacing == pytest.approx(default_spacing((64, 64)))
    assert label.any()
    assert not (out / "imagesTs").exists()


def test_refuses_non_empty_folder_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        synthesize_dataset(out, kind="nodule", n_cases=1, dim=2, shape=(64, 64))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    with pytest.raises(FileExistsError, match="not a folder"):
        synthesize_dataset(out / "keep.txt", kind="nodule", n_cases=1, dim=2, shape=(64, 64))
    synthesize_dataset(out, kind="nodule", n_cases=1, dim=2, shape=(64, 64), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "ds").mkdir()
    synthesize_dataset(tmp_path / "ds", kind="tumour", n_cases=1, dim=2, shape=(64, 64))
    assert (tmp_path / "ds" / "labelsTr" / "tumour_000.nii.gz").is_file()


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = generate_module.synthesize_phantom

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(generate_module, "synthesize_phantom", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        synthesize_dataset(tmp_path / "ds", kind="covid", n_cases=3, dim=2, shape=(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_dataset_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        synthesize_dataset(tmp_path / "a", kind="flu", n_cases=1)
    with pytest.raises(ValueError, match="n_cases"):
        synthesize_dataset(tmp_path / "a", kind="covid", n_cases=0)
    with pytest.raises(ValueError, match="dim"):
        synthesize_dataset(tmp_path / "a", kind="covid", n_cases=1, dim=4)
    with pytest.raises(ValueError, match="3 entries"):
        synthesize_dataset(tmp_path / "a", kind="covid", n_cases=1, shape=(64, 64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(0, 64, 64), (8, -1, 64), (64, 0)])
def test_non_positive_shape_is_a_value_error(tmp_path, shape):
    # A zero or negative shape entry used to escape as ZeroDivisionError from default_spacing.
    with pytest.raises(ValueError, match=r"shape must be at least 32 in y and x"):
        synthesize_dataset(tmp_path / "d", kind="covid", n_cases=1, dim=len(shape), shape=shape)
