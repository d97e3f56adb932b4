"""Checkpoints cannot run code when read, never hold NaN/inf weights, and killed writes are
cleaned up (issue 11, items 1, 6 and 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcl.cli import main
from rdcl.formats.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    remove_stale_temps,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class _Payload:
    """Pickles to ``os.system("touch <marker>")``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save(
        {"format": FORMAT, "config": {}, "kind": "single", "stage": "train", "step": 0,
         "model": {}, "boom": _Payload(marker)},
        path,
    )  # fmt: skip
    return path


def test_loading_a_hostile_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="not a safe rdcl checkpoint") as info:
        load_checkpoint(evil)
    assert not marker.exists()
    assert "\n" not in str(info.value) and "system" in str(info.value)


def test_predict_refuses_a_hostile_checkpoint_without_running_it(tmp_path, capsys):
    from rdcl.data.io import Geometry, write_image

    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    img = tmp_path / "x.nrrd"
    eye = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    write_image(np.zeros((4, 8, 8), np.int16), Geometry((1.0,) * 3, (0.0,) * 3, eye), img)
    argv = ["predict", "-i", str(img), "-o", str(tmp_path / "m.nrrd"), "-m", str(evil)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a safe rdcl checkpoint" in err[0], err
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_covid(tmp_path_factory) -> Path:
    """A synthetic 2D COVID set (2 training cases, 64 x 64)."""
    data = tmp_path_factory.mktemp("covid") / "covid"
    synth = ["synth", "--out", str(data), "--kind", "covid", "--dim", "2", "--shape", "64,64"]
    assert main([*synth, "--cases", "2", "--test", "1", "-q"]) == 0
    return data


def test_resume_refuses_a_hostile_last_checkpoint(tmp_path, capsys, tiny_covid):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_covid), "--out", str(run), "--preset", "tiny2d",
            "--method", "baseline", "--set", "train.steps=2", "--set",
            "train.checkpoint_every=1", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 0
    (run / "final.ckpt").unlink()
    marker = tmp_path / "pwned"
    _evil_checkpoint(run / "last.ckpt", marker)
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a safe rdcl checkpoint" in err and "Traceback" not in err
    assert not marker.exists()


def test_checkpoints_load_with_weights_only(tmp_path):
    """What rdcl writes (RNG states included) is plain data: the safe loader accepts it."""
    payload = {"format": FORMAT, "config": {"a": [1, 2.5, "x"]}, "kind": "single",
               "stage": "train", "step": 1, "model": {"w": torch.ones(2)}, "optimizer": None,
               "rng": rng_state()}  # fmt: skip
    p = save_checkpoint(tmp_path / "a.ckpt", payload)
    raw = torch.load(p, weights_only=True)  # raises if anything but plain data is inside
    assert raw["step"] == 1
    state = load_checkpoint(p)["rng"]
    a = np.random.rand(3)  # noqa: NPY002
    set_rng_state(state)
    np.testing.assert_array_equal(np.random.rand(3), a)  # noqa: NPY002


def test_checkpoints_with_a_numpy_rng_array_still_load(tmp_path):
    """Checkpoints written before the RNG state became plain data hold a numpy array."""
    old = {"format": FORMAT, "config": {}, "kind": "single", "stage": "train", "step": 3,
           "model": {"w": torch.ones(2)}, "optimizer": None,
           "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),  # noqa: NPY002
                   "python": __import__("random").getstate()}}  # fmt: skip
    torch.save(old, tmp_path / "old.ckpt")
    ck = load_checkpoint(tmp_path / "old.ckpt")
    a = np.random.rand(2)  # noqa: NPY002
    set_rng_state(ck["rng"])
    set_rng_state(ck["rng"])
    assert ck["step"] == 3 and np.random.rand(2).shape == a.shape  # noqa: NPY002


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_never_written(tmp_path, bad):
    w = torch.ones(4)
    w[2] = bad
    payload = {"format": FORMAT, "config": {}, "kind": "single", "stage": "train", "step": 1,
               "model": {"enc.w": w}, "optimizer": None}  # fmt: skip
    with pytest.raises(CheckpointError, match=r"1 NaN/inf values .*'enc.w'"):
        save_checkpoint(tmp_path / "last.ckpt", payload)
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_removed(tmp_path):
    stale = [tmp_path / ".last.ckpt.abc123.tmp", tmp_path / ".final.ckpt.x.tmp"]
    for p in stale:
        p.write_bytes(b"")
    keep = [tmp_path / "last.ckpt", tmp_path / ".config.json.tmp", tmp_path / "a.tmp"]
    for p in keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def test_killed_save_leaves_no_temp_file_after_sigterm(tmp_path):
    """A SIGTERM during torch.save unwinds through save_checkpoint, which removes its temp."""
    script = f"""
import os, signal, torch
from rdcl.formats import checkpoint as c
real = torch.save
def slow(obj, fh, *a, **k):
    fh.write(b"partial"); fh.flush()
    os.kill(os.getpid(), signal.SIGTERM)
    real(obj, fh, *a, **k)
c.torch.save = slow
from rdcl.training.runlock import exit_on_sigterm
with exit_on_sigterm():
    c.save_checkpoint({str(tmp_path / "last.ckpt")!r}, {{"format": c.FORMAT, "model": {{}}}})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == [], proc.stderr
