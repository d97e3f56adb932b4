"""Folder prediction is all-or-nothing (issue 11, items 4 and 15): a failing case leaves the
output folder exactly as it was: earlier masks are not replaced, no folder is created."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from rdcl.config import preset
from rdcl.data.io import Geometry, read_image, write_image
from rdcl.inference.predictor import Predictor


class Threshold(nn.Module):
    """Logits = normalised intensity - 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return [x - 0.5 + self.dummy]


def _predictor() -> Predictor:
    cfg = preset("tiny2d")
    data = dataclasses.replace(cfg.data, normalization="window", window=(0.0, 100.0))
    return Predictor(Threshold(), config=cfg.replace(data=data), intensity=None, device="cpu")


def _inputs(folder, values=(0, 30, 90)):
    folder.mkdir(exist_ok=True)
    for i, v in enumerate(values):
        write_image(np.full((16, 16), v, np.uint8), Geometry.default(2), folder / f"c{i}.png")
    return folder


def test_overwrite_with_a_failing_later_case_keeps_every_earlier_mask(tmp_path):
    pred, src, out = _predictor(), _inputs(tmp_path / "in"), tmp_path / "out"
    written = pred.predict_folder(src, out, progress=False)
    before = {p.name: p.read_bytes() for p in written}
    # new images for c0 (now lesion) and a corrupt last case
    write_image(np.full((16, 16), 99, np.uint8), Geometry.default(2), src / "c0.png",
                overwrite=True)  # fmt: skip
    (src / "c2.png").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match=r"c2\.png"):
        pred.predict_folder(src, out, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging left


def test_successful_overwrite_replaces_every_mask(tmp_path):
    pred, src, out = _predictor(), _inputs(tmp_path / "in"), tmp_path / "out"
    pred.predict_folder(src, out, progress=False)
    (out / "keep.txt").write_text("user file")
    write_image(np.full((16, 16), 99, np.uint8), Geometry.default(2), src / "c0.png",
                overwrite=True)  # fmt: skip
    pred.predict_folder(src, out, overwrite=True, progress=False)
    assert read_image(out / "c0.png")[0].min() == 255
    assert (out / "keep.txt").read_text() == "user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_failing_folder_prediction_creates_no_folder(tmp_path):
    pred, src = _predictor(), _inputs(tmp_path / "in")
    (src / "c1.png").write_bytes(b"corrupt")
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(ValueError, match=r"c1\.png"):
        pred.predict_folder(src, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
