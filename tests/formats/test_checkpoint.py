from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rdcl.formats import checkpoint as ckpt_mod
from rdcl.formats.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _payload(step: int) -> dict:
    return {
        "format": FORMAT,
        "config": {"train": {"steps": 10}},
        "kind": "single",
        "stage": "train",
        "step": step,
        "model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) * step},
        "optimizer": None,
        "rng": rng_state(),
        "intensity": {"mean": 1.0, "std": 2.0, "lo": -1.0, "hi": 3.0},
        "dataset": {"name": "x", "dim": 2},
    }


def test_round_trip(tmp_path):
    p = save_checkpoint(tmp_path / "last.ckpt", _payload(3))
    back = load_checkpoint(p)
    assert back["step"] == 3
    assert torch.equal(back["model"]["w"], torch.arange(6.0).reshape(2, 3) * 3)
    assert back["dataset"] == {"name": "x", "dim": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_gets_the_permissions_of_an_ordinary_new_file(tmp_path):
    """The temp file behind the atomic write is created 0600; the checkpoint must not keep that
    (a final.ckpt shared with a group or a container would be unreadable)."""
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    p = save_checkpoint(tmp_path / "final.ckpt", _payload(1))
    assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_crash_during_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "last.ckpt", _payload(1))
    before = p.read_bytes()
    real_save = torch.save

    def crashing_save(obj, fh, *a, **k):
        real_save({"half": "written"}, fh)  # some bytes hit the temp file, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, _payload(2))
    assert p.read_bytes() == before
    assert load_checkpoint(p)["step"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


def test_save_refuses_payload_without_format(tmp_path):
    with pytest.raises(CheckpointError, match="format"):
        save_checkpoint(tmp_path / "a.ckpt", {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_load_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_load_garbage_file(tmp_path):
    p = tmp_path / "bad.ckpt"
    p.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="not an rdcl checkpoint"):
        load_checkpoint(p)


def test_load_other_torch_object(tmp_path):
    p = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, p)
    with pytest.raises(CheckpointError, match="not an rdcl checkpoint"):
        load_checkpoint(p)


def test_load_wrong_format_version(tmp_path):
    p = tmp_path / "old.ckpt"
    payload = _payload(1)
    payload["format"] = "rdcl-checkpoint/0"
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match="expected 'rdcl-checkpoint/1', found 'rdcl-ch"):
        load_checkpoint(p)


def test_load_incomplete(tmp_path):
    p = tmp_path / "inc.ckpt"
    torch.save({"format": FORMAT, "step": 1}, p)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(p)


def test_error_message_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "nope.ckpt")
    assert "\n" not in str(info.value)


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
