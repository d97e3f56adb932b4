"""``--resume`` needs a run to continue, on the same data, checked before anything is written
(issue 18, item 5: ``--resume`` with no run trained from step 0 after a warning; a refused
``--resume`` with other data first wrote a 15-file preprocessing cache into the run folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rdcl.cli import main
from rdcl.errors import DatasetError
from rdcl.training import run_training
from rdcl.training.resume import NothingToResumeError

TRAIN = ["--preset", "tiny2d", "--set", "train.steps=2", "--set", "train.checkpoint_every=1",
         "--set", "data.patch_size=[32,32]", "--device", "cpu", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("resume")
    synthesize_dataset(root / "covid", kind="covid", n_cases=3, dim=2, shape=(40, 40), seed=0)
    synthesize_dataset(root / "gen", kind="mixed", n_cases=2, dim=2, shape=(40, 40), seed=1)
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    "extra",
    [["--method", "baseline"], ["--method", "rdcl"], ["--pretrain-only"]],
    ids=["baseline", "with_stage1", "pretrain_only"],
)
def test_resume_without_a_run_is_one_line_and_writes_nothing(tmp_path, capsys, data, extra):
    run = tmp_path / "run"
    general = [] if extra == ["--method", "baseline"] else ["--general", str(data / "gen")]
    argv = ["train", "--data", str(data / "covid"), *general, "--out", str(run), *TRAIN]
    assert main([*argv, *extra, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to resume" in err[0], err
    assert not run.exists()
    run.mkdir()  # an empty (or non-run) folder is no run either
    (run / "notes.txt").write_text("x")
    assert main([*argv, *extra, "--resume"]) == 2
    assert _files(run) == ["notes.txt"]


def test_resume_without_a_run_from_python(tmp_path, data):
    from _training_fakes import tiny_cfg

    with pytest.raises(NothingToResumeError, match="nothing to resume"):
        run_training(tiny_cfg("baseline", steps=2), data / "covid", None, tmp_path / "r",
                     resume=True, progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_refused_resume_writes_no_cache(tmp_path, capsys, data):
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--method", "baseline", *TRAIN]
    assert main([*argv, "--data", str(data / "covid")]) == 0
    (run / "final.ckpt").unlink()  # stopped after its last checkpoint
    shutil.rmtree(run / "cache")  # the cache of the run's own data is gone too
    before = _files(run)
    other = tmp_path / "other"
    shutil.copytree(data / "covid", other)
    assert main([*argv, "--data", str(other), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data differ" in err[0], err
    assert _files(run) == before  # no cache, no lock file, nothing


def test_stage1_of_a_resumed_run_is_checked_too(tmp_path, data):
    """A run stopped in stage 1 (only pretrain/last.ckpt) resumes on the same general sets."""
    from _training_fakes import tiny_cfg

    run = tmp_path / "run"
    cfg = tiny_cfg("rdcl", steps=2)
    run_training(cfg, data / "covid", [data / "gen"], run, progress=False)
    for p in run.glob("*.ckpt"):
        p.unlink()  # as if stopped in stage 1
    (run / "pretrain" / "final.ckpt").rename(run / "pretrain" / "last.ckpt")
    other = tmp_path / "gen2"
    shutil.copytree(data / "gen", other)
    with pytest.raises(DatasetError, match=r"pretrain.*data differ"):
        run_training(cfg, data / "covid", [other], run, resume=True, progress=False)
