"""Run folders are safe to share and to restart (issue 11, items 2, 3, 5, 7 and 15): one run per
folder, ``overwrite`` validates first, ``resume`` refuses other data, killed runs leave nothing
stale, and a failing run leaves no folder behind."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _training_fakes import tiny_cfg

from rdcl.data.io import read_image, write_image
from rdcl.formats.run_folder import LOCK_NAME
from rdcl.training import load_checkpoint, run_training
from rdcl.training.runlock import RunInUseError, run_lock


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("synth")
    common = {"n_cases": 2, "dim": 2, "shape": (64, 64)}
    covid = synthesize_dataset(root / "covid", kind="covid", seed=0, **common)
    return Path(covid)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _cfg(**kw):
    return tiny_cfg("baseline", **{"steps": 2, "checkpoint_every": 1, **kw})


def _break_a_label(root: Path) -> None:
    label = sorted((root / "labelsTr").iterdir())[-1]
    mask, geom = read_image(label)
    write_image((mask > 0).astype(np.uint8) * 3, geom, label, overwrite=True)


# -- item 2: one run per folder -----------------------------------------------------------------


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from rdcl.training.runlock import run_lock\n"
        f"with run_lock({str(folder)!r}):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_a_folder_in_use_is_refused(tmp_path, synth_data):
    run = tmp_path / "run"
    run.mkdir()
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunInUseError, match=f"in use by PID {holder.pid}"):
            run_training(_cfg(), synth_data, None, run, progress=False)
        assert not (run / "final.ckpt").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the killed holder's lock: the folder is usable again
    final = run_training(_cfg(), synth_data, None, run, progress=False)
    assert final.is_file() and not (run / LOCK_NAME).exists()


def test_two_cli_trains_on_one_folder(tmp_path, synth_data):
    """Two real ``rdcl train`` processes on one --out: the second exits 2 naming the first's PID;
    SIGTERM then stops the first cleanly (no lock, no temporary checkpoint left)."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "rdcl", "train", "--data", str(synth_data), "--out", str(run),
            "--preset", "tiny2d", "--method", "baseline", "--set", "train.steps=100000",
            "--set", "train.checkpoint_every=2", "--device", "cpu", "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(1200):  # until the first run has written a checkpoint
            if (run / "last.ckpt").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1]
        second = subprocess.run([*argv, "--overwrite"], stderr=subprocess.PIPE, text=True, env=env)
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by PID {first.pid}" in lines[0], second.stderr
    assert first.returncode != 0 and "Traceback" not in err, err
    assert load_checkpoint(run / "last.ckpt")["step"] >= 2
    assert not list(run.glob(".*.tmp")) and not (run / LOCK_NAME).exists()


def test_one_lock_per_run_folder(tmp_path):
    """A run takes its folder's lock once (the run plan); a second take, even in the same
    process, is refused and leaves the holder's lock in place."""
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(RunInUseError, match=f"in use by PID {os.getpid()}"), run_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_other_torchrun_ranks_share_the_folder(tmp_path, monkeypatch):
    holder = _hold_lock(tmp_path)
    try:
        monkeypatch.setenv("RANK", "1")
        with run_lock(tmp_path):  # rank 1 of the holder's run: no lock of its own
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunInUseError), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


# -- item 3: overwrite validates before it removes --------------------------------------------


def test_overwrite_with_a_bad_label_keeps_the_old_run(tmp_path, synth_data):
    run = tmp_path / "run"
    run_training(_cfg(), synth_data, None, run, progress=False)
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {"final.ckpt", "last.ckpt", "log.jsonl"} <= set(kept)
    bad = _copy(synth_data, tmp_path / "bad")
    _break_a_label(bad)
    with pytest.raises(ValueError, match="label"):
        run_training(_cfg(), bad, None, run, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == kept


def test_overwrite_with_a_bad_pretrained_checkpoint_keeps_the_old_run(tmp_path, synth_data):
    run = tmp_path / "run"
    run_training(_cfg(), synth_data, None, run, progress=False)
    kept = (run / "final.ckpt").read_bytes()
    wrong = tmp_path / "not_stage1.ckpt"
    shutil.copy(run / "final.ckpt", wrong)  # a stage-2 baseline, not stage 1 of this config
    cfg = tiny_cfg("pretrain", steps=2)
    bad_model = cfg.replace(model=dataclasses.replace(cfg.model, in_channels=2))
    with pytest.raises(ValueError, match="architecture"):
        run_training(bad_model, synth_data, None, run, overwrite=True, pretrained=wrong,
                     progress=False)  # fmt: skip
    assert (run / "final.ckpt").read_bytes() == kept


# -- item 5: resume refuses other data ------------------------------------------------------


def _stopped_run(run: Path, data: Path) -> None:
    run_training(_cfg(), data, None, run, progress=False)
    (run / "final.ckpt").unlink()  # as if stopped after the last checkpoint


def test_resume_with_other_data_is_refused(tmp_path, synth_data):
    run = tmp_path / "run"
    _stopped_run(run, synth_data)
    other = _copy(synth_data, tmp_path / "other")
    with pytest.raises(ValueError, match=r"data differ from the run's.*folder"):
        run_training(_cfg(), other, None, run, resume=True, progress=False)
    assert not (run / "final.ckpt").exists()


def test_resume_with_a_changed_or_missing_case_is_refused(tmp_path, synth_data):
    data = _copy(synth_data, tmp_path / "data")
    run = tmp_path / "run"
    _stopped_run(run, data)
    image = sorted((data / "imagesTr").iterdir())[0]
    arr, geom = read_image(image)
    write_image(arr + 1, geom, image, overwrite=True)
    with pytest.raises(ValueError, match=r"case .* changed"):
        run_training(_cfg(), data, None, run, resume=True, progress=False)
    assert load_checkpoint(run / "last.ckpt")["data"][0]["root"] == str(data.resolve())


def test_resume_with_the_same_data_works(tmp_path, synth_data):
    run = tmp_path / "run"
    _stopped_run(run, synth_data)
    assert run_training(_cfg(), synth_data, None, run, resume=True, progress=False).is_file()


def test_cli_resume_with_other_data_exits_2(tmp_path, capsys, synth_data):
    from rdcl.cli import main

    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--preset", "tiny2d", "--method", "baseline",
            "--set", "train.steps=2", "--set", "train.checkpoint_every=1", "--device", "cpu",
            "-q"]  # fmt: skip
    assert main([*argv, "--data", str(synth_data)]) == 0
    (run / "final.ckpt").unlink()
    other = _copy(synth_data, tmp_path / "other")
    assert main([*argv, "--data", str(other), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data differ" in err[0] and str(other.resolve()) in err[0], err


# -- item 7: stale temporary files --------------------------------------------------------------


def test_resume_removes_stale_checkpoint_temps(tmp_path, synth_data):
    run = tmp_path / "run"
    _stopped_run(run, synth_data)
    stale = run / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"")
    run_training(_cfg(), synth_data, None, run, resume=True, progress=False)
    assert not stale.exists()


# -- item 15: nothing left behind --------------------------------------------------------------


def test_cache_that_is_a_file_creates_nothing(tmp_path, synth_data):
    cache = tmp_path / "cache"
    cache.write_text("x")
    run = tmp_path / "run"
    with pytest.raises(NotADirectoryError, match="cache must be a folder"):
        run_training(_cfg(), synth_data, None, run, cache_dir=cache, progress=False)
    assert not run.exists()


def test_cli_train_failing_in_preprocessing_leaves_no_folder(
    tmp_path, monkeypatch, synth_data, capsys
):
    """Whatever stops a fresh run before its first checkpoint (here an OSError such as a symlink
    loop met while preprocessing: exit 2, one line), the run folder it created is removed again."""
    from rdcl.cli import main
    from rdcl.training import stages as stages_module

    def loop(*a, **k):
        raise OSError(40, "Too many levels of symbolic links")

    monkeypatch.setattr(stages_module, "as_cached", loop)
    run = tmp_path / "run"
    argv = ["train", "--data", str(synth_data), "--out", str(run), "--preset", "tiny2d",
            "--method", "baseline", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "symbolic links" in err[0], err
    assert not run.exists()


# -- item 6 (checkpoint half): no checkpoint with non-finite weights ---------------------------


def test_weights_turning_nan_are_never_checkpointed(tmp_path, monkeypatch, synth_data):
    """An optimiser step that leaves NaN weights (a NaN learning rate did) with a still-finite
    loss: the next checkpoint is refused as a divergence naming the last good one, which holds
    finite weights."""
    import torch

    from rdcl.formats.checkpoint import nonfinite_weights
    from rdcl.training import TrainingDivergedError

    real_step = torch.optim.SGD.step
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        out = real_step(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="NaN/inf values") as info:
        run_training(_cfg(steps=4), synth_data, None, run, progress=False)
    assert f"last good checkpoint: {run / 'last.ckpt'}" in str(info.value)
    last = load_checkpoint(run / "last.ckpt")
    assert last["step"] == 1 and nonfinite_weights(last["model"]) == (0, None)
    assert not (run / "final.ckpt").exists()


def test_resume_with_resampled_data_names_the_data_not_the_config(tmp_path, synth_data):
    """Other voxel sizes also move target_spacing "auto": the refusal names the data change."""
    from rdcl.data.io import Geometry

    data = _copy(synth_data, tmp_path / "data")
    run = tmp_path / "run"
    _stopped_run(run, data)
    for folder in ("imagesTr", "labelsTr"):
        path = sorted((data / folder).iterdir())[0]
        arr, geom = read_image(path)
        coarse = Geometry(tuple(2 * s for s in geom.spacing), geom.origin, geom.direction)
        write_image(arr, coarse, path, overwrite=True)
    with pytest.raises(ValueError, match="data differ from the run's") as info:
        run_training(_cfg(), data, None, run, resume=True, progress=False)
    assert "config differs" not in str(info.value)
