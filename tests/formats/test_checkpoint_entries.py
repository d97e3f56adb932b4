"""A damaged checkpoint is one line, never a traceback, never wrong masks (issue 18, item 5:
a bogus network ``kind`` gave a ValueError traceback in ``predict -m`` and ``export``; a
checkpoint with pickled code printed torch's pickle-protocol warning before rdcl's line)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcl.cli import main
from rdcl.config import preset
from rdcl.data.io import Geometry, write_image
from rdcl.formats.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from rdcl.model import build_network


def _payload() -> dict:
    cfg = preset("tiny2d")
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    return {
        "format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
        "step": 3, "model": net.state_dict(), "optimizer": None, "rng": None,
        "intensity": {"mean": -500.0, "std": 300.0, "lo": -1000.0, "hi": 200.0},
        "dataset": {"name": "t", "dim": 2},
    }  # fmt: skip


def _nan_weights(c: dict) -> None:
    name = next(iter(c["model"]))
    c["model"][name] = torch.full_like(c["model"][name], float("nan"))


DAMAGE = {
    "kind_bogus": (lambda c: c.update(kind="bogus"), "network kind must be one of"),
    "kind_none": (lambda c: c.update(kind=None), "network kind must be one of"),
    "stage": (lambda c: c.update(stage="zzz"), "stage must be"),
    "step_str": (lambda c: c.update(step="x"), "step must be an integer"),
    "step_negative": (lambda c: c.update(step=-1), "step must be an integer"),
    "model_list": (lambda c: c.update(model=[1, 2]), "'model' must be dict"),
    "model_not_tensors": (lambda c: c.update(model={"w": 1.0}), "parameter names to tensors"),
    "config_list": (lambda c: c.update(config=[1]), "'config' must be dict"),
    "dataset_str": (lambda c: c.update(dataset="x"), "'dataset' must be dict or None"),
    "intensity_str": (lambda c: c.update(intensity="x"), "'intensity' must be dict or None"),
    "nan_weights": (_nan_weights, "NaN/inf values"),
}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "x.nii.gz"
    write_image(np.full((32, 32), -800, np.int16), Geometry.default(2, (1.0, 1.0)), path)
    return path


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_entries_are_one_checkpoint_error(tmp_path, name):
    damage, message = DAMAGE[name]
    payload = _payload()
    damage(payload)
    torch.save(payload, tmp_path / "d.ckpt")  # torch.save: save_checkpoint refuses NaN itself
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(tmp_path / "d.ckpt")
    assert "\n" not in str(info.value)


def test_a_sound_checkpoint_loads(tmp_path):
    path = save_checkpoint(tmp_path / "ok.ckpt", _payload())
    assert load_checkpoint(path)["kind"] == "single"


@pytest.mark.parametrize("command", ["predict", "export"])
def test_bogus_kind_is_one_line_in_predict_and_export(tmp_path, image, capsys, command):
    payload = _payload()
    payload["kind"] = "bogus"
    ckpt = save_checkpoint(tmp_path / "bogus.ckpt", payload)
    if command == "predict":
        argv = ["predict", "-i", str(image), "-o", str(tmp_path / "m.nii.gz"), "-m", str(ckpt)]
    else:
        argv = ["export", "-m", str(ckpt), "--out", str(tmp_path / "m.ts")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "network kind must be one of" in err[0] and "bogus" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.ckpt"]  # nothing written


def test_nan_weights_predict_no_mask(tmp_path, image, capsys):
    payload = _payload()
    _nan_weights(payload)
    torch.save(payload, tmp_path / "nan.ckpt")
    out = tmp_path / "m.nii.gz"
    assert (
        main(["predict", "-i", str(image), "-o", str(out), "-m", str(tmp_path / "nan.ckpt")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN/inf" in err[0], err
    assert not out.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_pickled_code_in_any_protocol_is_one_line_without_torch_warnings(
    tmp_path, image, capsys, protocol
):
    marker = tmp_path / "pwned"
    payload = {**_payload(), "boom": _Payload(marker)}
    evil = tmp_path / "evil.ckpt"
    torch.save(payload, evil, pickle_protocol=protocol)
    argv = ["predict", "-i", str(image), "-o", str(tmp_path / "m.nii.gz"), "-m", str(evil)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 2
    assert not [w for w in caught if "pickle protocol" in str(w.message)], caught
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not" in err[0] and "rdcl checkpoint" in err[0], err
    assert not marker.exists()
