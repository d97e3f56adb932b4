"""rdcl.inference.quantifier.Quantifier: ``rdcl predict --report`` from Python (issue 12, item 3):
the report and lung-mask checks, lung-mask lookup and overlay check live in the library."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rdcl.data.io import Geometry, write_image
from rdcl.errors import RdclInputError
from rdcl.inference.quantifier import Quantifier, find_lung_mask

GEOM = Geometry.default(3, spacing=(2.0, 1.0, 1.0))


def _mask(shape=(4, 8, 8)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[1:3, 2:4, 2:6] = 1  # 2 x 2 x 4 = 16 voxels of 2 mm^3
    return m


def test_checks_before_any_prediction(tmp_path):
    with pytest.raises(RdclInputError, match=r"expected a \.csv path"):
        Quantifier(tmp_path / "q.txt")
    with pytest.raises(IsADirectoryError, match="must be a file path"):
        Quantifier(tmp_path)
    (tmp_path / "q.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"q\.json"):
        Quantifier(tmp_path / "q.csv")
    Quantifier(tmp_path / "q.csv", overwrite=True)
    with pytest.raises(FileNotFoundError, match="--lung-mask not found"):
        Quantifier(tmp_path / "r.csv", tmp_path / "none.nii.gz")
    lung = tmp_path / "lung.nii.gz"
    write_image(np.ones((4, 8, 8), np.uint8), GEOM, lung)
    with pytest.raises(NotADirectoryError, match="must be a folder"):
        Quantifier(tmp_path / "r.csv", lung, folder=True)


def test_lung_folder_matching_overlay_and_report(tmp_path):
    lungs = tmp_path / "lungs"
    lungs.mkdir()
    lung = np.zeros((4, 8, 8), np.uint8)
    lung[:, :, :4] = 1  # half of the mask's lesion lies inside
    write_image(lung, GEOM, lungs / "case.nii.gz")
    src = tmp_path / "case_0000.nii.gz"  # the image names carry the channel suffix
    assert find_lung_mask(lungs, src) == lungs / "case.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"no lung mask for other\.nii\.gz"):
        find_lung_mask(lungs, tmp_path / "other.nii.gz")
    q = Quantifier(tmp_path / "q.csv", lungs, folder=True)
    q.add(src, np.zeros((4, 8, 8), np.int16), _mask(), GEOM)
    csv_path, json_path = q.write()
    (row,) = json.loads(json_path.read_text())["cases"]
    assert row["case"] == "case_0000"
    assert row["infection_ml"] == pytest.approx(16 * 2.0 / 1000)
    assert row["lung_ml"] == pytest.approx(lung.sum() * 2.0 / 1000)
    assert row["percent_infected"] == pytest.approx(100 * 8 / lung.sum())
    assert row["lung_mask"] == str(lungs / "case.nii.gz")
    assert csv_path.read_text().count("\n") == 2
    shifted = Geometry((2.0, 1.0, 1.0), (5.0, 0.0, 0.0), GEOM.direction)
    with pytest.raises(RdclInputError, match="does not overlay"):
        q.add(src, np.zeros((4, 8, 8), np.int16), _mask(), shifted)
    with pytest.raises(RdclInputError, match="has shape"):
        q.add(src, np.zeros((4, 8, 6), np.int16), _mask((4, 8, 6)), GEOM)
