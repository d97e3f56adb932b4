"""Staging folders of killed processes are cleaned by the next run (issue 18, item 5: a killed
``rdcl predict`` left a hidden staging folder that later runs never cleaned)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from rdcl.data.io import Geometry, write_image
from rdcl.fsutil import make_staging_dir, remove_stale_staging


def _checkpoint(path):
    import torch

    from rdcl.config import preset
    from rdcl.formats.checkpoint import FORMAT, save_checkpoint
    from rdcl.model import build_network

    cfg = preset("tiny2d")
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    return save_checkpoint(
        path,
        {"format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
         "step": 0, "model": net.state_dict(), "optimizer": None, "rng": None,
         "intensity": {"mean": 100.0, "std": 50.0, "lo": 0.0, "hi": 255.0},
         "dataset": {"name": "t", "dim": 2}},
    )  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_folders_of_dead_owners_on_this_host_are_removed(tmp_path):
    out = tmp_path / "masks"
    mine = make_staging_dir(out, "predict")  # this process: alive
    assert f".masks.predict-{os.getpid()}-" in mine.name
    dead = tmp_path / mine.name.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-", 1)
    dead.mkdir()
    (dead / "c0.nii.gz").write_bytes(b"half")
    host = mine.name.split("-")[2]
    other_host = (
        tmp_path / f".masks.predict-{_dead_pid()}-{'0' * 8 if host != '0' * 8 else '1' * 8}-x"
    )
    other_host.mkdir()
    other_out = tmp_path / f".other.predict-{_dead_pid()}-{host}-x"
    other_out.mkdir()
    old = tmp_path / f".masks.old-{_dead_pid()}-{host}-x"  # a replaced output: never touched
    old.mkdir()
    assert remove_stale_staging(out, "predict") == [dead]
    assert not dead.exists()
    assert mine.is_dir() and other_host.is_dir() and other_out.is_dir() and old.is_dir()


def test_a_killed_predict_leaves_nothing_after_the_next_run(tmp_path):
    """A real ``rdcl predict`` killed with SIGKILL inside its staging; the next run cleans up."""
    from rdcl.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        write_image(np.zeros((16, 16), np.uint8), Geometry.default(2), src / f"c{i}.png")
    out = tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "from rdcl.fsutil import make_staging_dir\n"
        f"tmp = make_staging_dir({str(out)!r}, 'predict')\n"
        "(tmp / 'c0.png').write_bytes(b'half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.predict-")]
    assert len(left) == 1
    ckpt = _checkpoint(tmp_path / "m.ckpt")
    assert main(["predict", "-q", "-i", str(src), "-o", str(out), "-m", str(ckpt)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png"]
