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


def _fake_scores(run: Path, value: float) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "scores.csv").write_text(f"case,dsc,nsd\nc5,{value},{value}\n")


def test_seed_folders_one_seed_keeps_the_old_layout(tmp_path):
    plan = _plan(tmp_path, make_split(NAMES, 2, 2), default_seed=0)
    assert plan.unit_seeds == [0]
    assert plan.run_dir("rdcl", 1) == tmp_path / "cv/runs/rdcl/fold_2"  # as before --seeds
    assert plan.run_dir("rdcl", 1, 0) == plan.run_dir("rdcl", 1)
    assert plan.run_dir("rdcl", 1, 3) == tmp_path / "cv/runs/rdcl/fold_2_seed_3"
    seven = _plan(tmp_path, make_split(NAMES, 2, 2), default_seed=7, seeds=[7, 0])
    assert seven.run_dir("rdcl", 0, 7).name == "fold_1" and seven.unit_seeds == [7, 0]
    assert seven.run_dir("rdcl", 0, 0).name == "fold_1_seed_0"


def test_collect_scores_finds_every_seed_of_an_existing_study(tmp_path):
    from rdcl.study.runner import collect_scores

    split = make_split(NAMES, 2, 2)
    old = _plan(tmp_path, split)  # a one-seed study as written before --seeds existed
    _fake_scores(old.run_dir("baseline", 0), 0.5)
    _fake_scores(old.run_dir("baseline", 1), 0.6)
    rows, missing = collect_scores(old)
    assert [(r["method"], r["fold"], r["seed"], r["dsc"]) for r in rows] == [
        ("baseline", 0, 0, 0.5), ("baseline", 1, 0, 0.6),
    ]  # fmt: skip
    assert ("baseline", 0, 0) not in missing and ("rdcl", 1, 0) in missing
    # seed 1 of fold 1 added later; a report without --seeds still sees it and lists the rest
    _fake_scores(old.run_dir("baseline", 0, 1), 0.7)
    assert old.seeds_of("baseline") == [0, 1] and old.seeds_of("rdcl") == [0]
    rows, missing = collect_scores(old)
    assert [(r["fold"], r["seed"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    assert ("baseline", 1, 1) in missing and ("rdcl", 0, 1) not in missing


def test_each_seed_is_its_own_run(tmp_path, monkeypatch):
    import rdcl.study.runner as runner

    plan = _plan(tmp_path, make_split(NAMES, 2, 2), seeds=[0, 2])
    prepare_study(plan)
    commands = []

    def fake_run(cmd, what):
        commands.append((cmd, what))
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "final.ckpt").write_bytes(b"")

    def fake_score(ckpt, spec, names, pred_dir, scores_csv, **kw):
        _fake_scores(Path(scores_csv).parent, 0.5)
        return []

    monkeypatch.setattr(runner, "_run", fake_run)
    monkeypatch.setattr(runner, "score_run", fake_score)
    monkeypatch.setattr(runner, "pretrain_checkpoint", lambda plan, group: tmp_path / "g.ckpt")
    plan.rows = [r for r in plan.rows if r.name in ("baseline", "rdcl")]
    plan.folds = [0]
    runner.run_study(plan, spec=None)
    whats = [w for _, w in commands]
    assert whats == [
        "baseline fold 1",
        "rdcl fold 1",
        "baseline fold 1 seed 2",
        "rdcl fold 1 seed 2",
    ]
    outs = [Path(c[c.index("--out") + 1]).name for c, _ in commands]
    assert outs == ["fold_1", "fold_1", "fold_1_seed_2", "fold_1_seed_2"]
    sets = [[c[i + 1] for i, a in enumerate(c) if a == "--set"] for c, _ in commands]
    assert sets[0] == [] and sets[2] == ["train.seed=2"]
    # only the default seed's rdcl run of fold 1 keeps snapshots (the relation figures' run)
    assert sets[1] == ["train.snapshots=6"] and sets[3] == ["train.seed=2"]
    # both use the one stage 1; a second call trains nothing
    assert all(
        c[c.index("--pretrained") + 1] == str(tmp_path / "g.ckpt") for c, _ in commands[1::2]
    )
    commands.clear()
    monkeypatch.setattr(runner, "verify_finished", lambda path, what: path)
    rows, missing = runner.run_study(plan, spec=None)
    assert commands == [] and {r["seed"] for r in rows} == {0, 2}
    assert missing == [("baseline", 1, 0), ("baseline", 1, 2), ("rdcl", 1, 0), ("rdcl", 1, 2)]
