"""Fixtures that write tiny datasets in each supported layout to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rdcl.data.io import Geometry, write_image

GEOM3 = Geometry(
    spacing=(2.5, 0.8, 0.7),
    origin=(-10.0, 20.5, 3.25),
    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
)


def ct_volume(rng: np.random.Generator, shape=(6, 8, 10)) -> tuple[np.ndarray, np.ndarray]:
    """An int16 'CT' volume (lung-like -800 HU, lesion -300 HU) and its 0/1 lesion mask."""
    image = rng.normal(-800.0, 50.0, size=shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[2:4, 3:6, 4:7] = 1
    image[label > 0] = rng.normal(-300.0, 30.0, size=int(label.sum())).astype(np.int16)
    return image, label


@pytest.fixture
def geom3() -> Geometry:
    """An anisotropic, offset 3D geometry."""
    return GEOM3


@pytest.fixture
def make_ct():
    """The :func:`ct_volume` builder."""
    return ct_volume


@pytest.fixture
def nnunet_dir(tmp_path: Path) -> Path:
    """Native nnU-Net v2 raw layout with 3 training cases and 1 unlabelled test case."""
    root = tmp_path / "Dataset001_Test"
    rng = np.random.default_rng(0)
    for i in range(3):
        image, label = ct_volume(rng)
        write_image(image, GEOM3, root / "imagesTr" / f"case{i:03d}_0000.nii.gz")
        write_image(label, GEOM3, root / "labelsTr" / f"case{i:03d}.nii.gz")
    image, _ = ct_volume(rng)
    write_image(image, GEOM3, root / "imagesTs" / "case100_0000.nii.gz")
    meta = {
        "name": "Test",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
        "rdcl": {"lesion": "tumour"},
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
