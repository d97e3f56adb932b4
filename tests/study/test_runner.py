"""The study runner's bookkeeping (no training): rows, resume flags, commands, split reuse."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rdcl.study.rows import study_rows
from rdcl.study.runner import (
    StudyMismatchError,
    StudyPlan,
    _resume_flags,
    _train_command,
    prepare_study,
    resolve_split,
)
from rdcl.study.splits import make_split

NAMES = [f"c{i}" for i in range(8)]


def test_rows_of_the_paper_tables():
    rows = study_rows([Path("/d/msd"), Path("/d/nsclc-eff")])
    assert [r.name for r in rows] == [
        "baseline", "pretrain_msd", "pretrain_nsclc_eff", "pretrain_all",
        "multi_encoder", "backbone", "rdcl_g", "rdcl",
    ]  # fmt: skip
    by = {r.name: r for r in rows}
    assert by["pretrain_msd"].pretrain_group == "msd" and by["rdcl"].pretrain_group == "all"
    assert by["rdcl"].general_batches and not by["backbone"].general_batches
    assert [r.name for r in study_rows([Path("/d/msd")], ["pretrain", "rdcl"])] == [
        "pretrain_msd",
        "rdcl",
    ]
    assert study_rows([Path("/d/msd")])[-1].pretrain_group == "msd"  # one set: no "all" run
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        study_rows([Path("/d/msd")], ["nope"])
    with pytest.raises(ValueError, match="distinct folder names"):
        study_rows([Path("/a/x"), Path("/b/x")])


def test_resume_flags(tmp_path):
    assert _resume_flags(tmp_path) == []  # fresh
    (tmp_path / "log.jsonl").write_text("")
    assert _resume_flags(tmp_path) == ["--overwrite"]  # started, no checkpoint yet
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert _resume_flags(tmp_path) == ["--resume"]  # a partial run resumes


def _plan(tmp_path, split, **kw):
    return StudyPlan(Path("/data/covid"), [Path("/data/msd")], tmp_path / "cv",
                     study_rows([Path("/data/msd")]), split, **kw)  # fmt: skip


def test_train_command_and_launcher(tmp_path):
    plan = _plan(tmp_path, make_split(NAMES, 2, 2), config_args=["--preset", "tiny2d"])
    cmd = _train_command(plan, tmp_path / "run", ["--method", "rdcl"])
    assert cmd[:5] == [sys.executable, "-m", "rdcl", "train", "-q"]
    assert cmd[-4:] == ["--preset", "tiny2d", "--method", "rdcl"]
    plan.launcher = ["torchrun", "--nproc_per_node=2"]
    assert _train_command(plan, tmp_path / "run", [])[:4] == [
        "torchrun", "--nproc_per_node=2", "-m", "rdcl",
    ]  # fmt: skip


def test_split_is_saved_reused_and_guarded(tmp_path):
    out = tmp_path / "cv"
    split = resolve_split(NAMES, out, split_file=None, folds=2, train_per_fold=2, seed=0)
    prepare_study(_plan(tmp_path, split))
    assert (out / "folds/fold_2/test.txt").read_text().split() == list(split.folds[1].test)
    again = resolve_split(NAMES, out, split_file=None, folds=None, train_per_fold=None, seed=0)
    assert again == split
    with pytest.raises(StudyMismatchError, match="another split"):
        resolve_split(NAMES, out, split_file=None, folds=2, train_per_fold=3, seed=0)
    with pytest.raises(StudyMismatchError, match="other settings"):
        prepare_study(_plan(tmp_path, split, config_args=["--set", "train.lr=1"]))
