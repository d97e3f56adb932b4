"""The study runner's bookkeeping (no training): rows, resume flags, unit files and commands,
split reuse."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rdcl.study import unit as units
from rdcl.study.rows import study_rows
from rdcl.study.runner import (
    StudyMismatchError,
    StudyPlan,
    _restart,
    make_unit,
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
    assert _restart(tmp_path) == {"resume": False, "overwrite": False}  # fresh
    (tmp_path / "log.jsonl").write_text("")
    assert _restart(tmp_path) == {"resume": False, "overwrite": True}  # started, no checkpoint
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert _restart(tmp_path) == {"resume": True, "overwrite": False}  # a partial run resumes


def _plan(tmp_path, split, **kw):
    return StudyPlan(Path("/data/covid"), [Path("/data/msd")], tmp_path / "cv",
                     study_rows([Path("/data/msd")]), split, **kw)  # fmt: skip


def test_unit_file_and_command_and_launcher(tmp_path):
    plan = _plan(tmp_path, make_split(NAMES, 2, 2), preset="tiny2d", overrides=["train.lr=0.1"])
    assert plan.config_args == ["--preset", "tiny2d", "--set", "train.lr=0.1"]  # study.json's
    run = plan.run_dir("rdcl", 0)
    unit = make_unit(plan, run, "rdcl fold 1", "train", method="rdcl", overrides=["train.seed=2"])
    assert (unit.stage, unit.method, unit.out, unit.data) == (
        "train", "rdcl", str(run), "/data/covid",
    )  # fmt: skip
    assert unit.preset == "tiny2d" and unit.overrides == ("train.lr=0.1", "train.seed=2")
    assert (unit.device, unit.cache) == ("cpu", str(tmp_path / "cv/cache"))
    assert not (unit.resume or unit.overwrite or unit.progress)
    assert Path(unit.result) == tmp_path / "cv/units/runs/rdcl/fold_1/result.json"
    path = units.write_unit(unit, Path(unit.result).parent / units.UNIT_FILE)
    assert units.read_unit(path) == unit
    assert units.command(plan.launcher, path) == [sys.executable, "-m", "rdcl.study.unit",
                                                  str(path)]  # fmt: skip
    plan.launcher = ["torchrun", "--nproc_per_node=2"]
    assert units.command(plan.launcher, path)[:4] == [
        "torchrun", "--nproc_per_node=2", "-m", "rdcl.study.unit",
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
        prepare_study(_plan(tmp_path, split, overrides=["train.lr=1"]))


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
    launched = []

    def fake_launch(plan, unit):
        launched.append(unit)
        out = Path(unit.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "final.ckpt").write_bytes(b"")
        return out / "final.ckpt"

    def fake_score(ckpt, spec, names, pred_dir, scores_csv, **kw):
        _fake_scores(Path(scores_csv).parent, 0.5)
        return []

    monkeypatch.setattr(runner, "launch", fake_launch)
    monkeypatch.setattr(runner, "score_run", fake_score)
    monkeypatch.setattr(runner, "pretrain_checkpoint", lambda plan, group: tmp_path / "g.ckpt")
    plan.rows = [r for r in plan.rows if r.name in ("baseline", "rdcl")]
    plan.folds = [0]
    runner.run_study(plan, spec=None)
    assert [u.name for u in launched] == [
        "baseline fold 1",
        "rdcl fold 1",
        "baseline fold 1 seed 2",
        "rdcl fold 1 seed 2",
    ]
    assert [Path(u.out).name for u in launched] == [
        "fold_1", "fold_1", "fold_1_seed_2", "fold_1_seed_2",
    ]  # fmt: skip
    assert launched[0].overrides == () and launched[2].overrides == ("train.seed=2",)
    # only the default seed's rdcl run of fold 1 keeps snapshots (the relation figures' run)
    assert launched[1].overrides == ("train.snapshots=6",)
    assert launched[3].overrides == ("train.seed=2",)
    # every unit trains on its fold's cases; both rdcl units use the one stage 1
    assert {u.cases for u in launched} == {str(plan.fold_dir(0) / "train.txt")}
    assert all(u.pretrained == str(tmp_path / "g.ckpt") for u in launched[1::2])
    assert launched[0].pretrained is None and launched[1].general == ("/data/msd",)
    # a second call trains nothing
    launched.clear()
    monkeypatch.setattr(runner, "verify_finished", lambda path, what: path)
    rows, missing = runner.run_study(plan, spec=None)
    assert launched == [] and {r["seed"] for r in rows} == {0, 2}
    assert missing == [("baseline", 1, 0), ("baseline", 1, 2), ("rdcl", 1, 0), ("rdcl", 1, 2)]
