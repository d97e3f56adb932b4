"""``rdcl cv`` end to end on tiny synthetic 2D data: runs, tables, figures, resume, bad input."""

from __future__ import annotations

import csv
import json

import pytest

from rdcl.cli import main

TINY = [
    "--preset", "tiny2d",
    "--set", "train.steps=3",
    "--set", "train.pretrain_steps=3",
    "--set", "train.rampup_steps=2",
    "--set", "train.device=cpu",
    "--set", "data.patch_size=[32,32]",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("cvdata")
    synthesize_dataset(root / "covid", kind="covid", n_cases=5, dim=2, shape=(40, 40), seed=0)
    synthesize_dataset(root / "gen", kind="mixed", n_cases=3, dim=2, shape=(40, 40), seed=1)
    return root


@pytest.mark.slow
def test_cv_end_to_end_and_resume(synth, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cv"
    argv = ["cv", "-q", "--data", str(synth / "covid"), "--general", str(synth / "gen"),
            "--out", str(out), "--folds", "2", "--train-per-fold", "2",
            "--methods", "baseline", "rdcl", "--fold", "1", *TINY]  # fmt: skip
    assert main(argv) == 0
    split = json.loads((out / "split.json").read_text())
    assert len(split["folds"]) == 2 and all(len(f["train"]) == 2 for f in split["folds"])
    fold = split["folds"][0]
    # each run trained on its fold's cases only (rdcl train --cases) and scored the rest
    assert (out / "folds/fold_1/train.txt").read_text().split() == fold["train"]
    for m in ("baseline", "rdcl"):
        run = out / "runs" / m / "fold_1"
        assert (run / "final.ckpt").is_file()
        scored = (run / "scores.csv").read_text().splitlines()[1:]
        assert sorted(r.split(",")[0] for r in scored) == sorted(fold["test"])
    assert (out / "pretrain" / "gen" / "final.ckpt").is_file()
    # the rdcl run of fold 1 keeps its weights at step 0 and evenly over its 3 steps (Fig. 4/5
    # in time); the other runs keep none
    kept = sorted(p.name for p in (out / "runs/rdcl/fold_1/snapshots").iterdir())
    assert kept == [f"train_step_{s:07d}.ckpt" for s in range(4)]
    assert not (out / "runs/baseline/fold_1/snapshots").exists()
    assert not (out / "runs" / "baseline" / "fold_2").exists()  # --fold 1 only
    md = (out / "results.md").read_text()
    assert "| baseline |" in md and "| rdcl |" in md and "Wilcoxon" in md
    report = (out / "report.md").read_text()
    assert "Not run yet (2): baseline fold 2, rdcl fold 2" in report
    for fig in ("boxplot", "overlay_rdcl_best", "overlay_baseline_worst", "training_curves",
                "relations_start", "relations_end", "relations_training"):  # fmt: skip
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    # resume: a finished (method, fold) is skipped, its checkpoint untouched
    stamp = (out / "runs/rdcl/fold_1/final.ckpt").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs/rdcl/fold_1/final.ckpt").stat().st_mtime_ns == stamp
    # a changed configuration in the same study folder is refused with one line
    capsys.readouterr()
    assert main([*argv, "--set", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0]


def test_cv_bad_input_is_one_line(synth, tmp_path, capsys):
    base = ["cv", "--data", str(synth / "covid"), "--out", str(tmp_path / "cv")]
    cases = [
        ([*base], "expected --split FILE or --folds K"),
        ([*base, "--folds", "3"], "go together"),
        ([*base, "--folds", "3", "--train-per-fold", "2"], "5 cases"),
        ([*base, "--folds", "2", "--train-per-fold", "2", "--methods", "rdcl"], "needs --general"),
        ([*base, "--folds", "2", "--train-per-fold", "2", "--fold", "3"], "outside"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps({"folds": [{"train": ["nope"], "test": ["case_000"]}]}))
    assert main([*base, "--split", str(bad)]) == 2
    assert "not in the dataset" in capsys.readouterr().err


def test_cv_from_python_plans_checks_and_reports(synth, tmp_path):
    """``rdcl cv`` as a library: the same checks and messages, the same study folder."""
    from rdcl.errors import RdclInputError
    from rdcl.study import plan_cv, run_cv

    out = tmp_path / "cv"
    with pytest.raises(RdclInputError, match="go together"):
        plan_cv(synth / "covid", out, folds=2)
    with pytest.raises(RdclInputError, match="cannot be split into words"):
        plan_cv(synth / "covid", out, folds=2, train_per_fold=2, launcher="torchrun 'x")
    assert not out.exists()
    plan = plan_cv(synth / "covid", out, folds=2, train_per_fold=2, methods=["baseline"],
                   preset="tiny2d", overrides=["train.steps=3"], report_only=True)  # fmt: skip
    assert plan.config_args == ["--preset", "tiny2d", "--set", "train.steps=3"]
    assert not out.exists()  # planning writes nothing
    outcome = run_cv(plan)  # trains nothing: the report lists what is missing
    assert outcome.report == out / "report.md" and outcome.stage1 == []
    assert "Not run yet (2): baseline fold 1, baseline fold 2" in outcome.report.read_text()
    assert (out / "study.json").is_file() and (out / "folds/fold_2/test.txt").is_file()


def test_train_cases_refuses_unknown_names(synth, tmp_path, capsys):
    names = tmp_path / "cases.txt"
    names.write_text("no_such_case\n")
    argv = ["train", "--data", str(synth / "covid"), "--out", str(tmp_path / "run"),
            "--cases", str(names), "--method", "baseline", *TINY]  # fmt: skip
    assert main(argv) == 2
    assert "'no_such_case'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cv_seeds_extend_a_one_seed_study(synth, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cv"
    argv = ["cv", "-q", "--data", str(synth / "covid"), "--out", str(out), "--folds", "2",
            "--train-per-fold", "2", "--methods", "baseline", "--fold", "1", *TINY]  # fmt: skip
    assert main(argv) == 0  # one seed: today's layout
    runs = out / "runs" / "baseline"
    assert sorted(p.name for p in runs.iterdir()) == ["fold_1"]
    stamp = (runs / "fold_1" / "final.ckpt").stat().st_mtime_ns
    # more seeds added to the same study: the seed-0 run is the one-seed study's, kept as is
    assert main([*argv, "--seeds", "0", "1"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["fold_1", "fold_1_seed_1"]
    assert (runs / "fold_1" / "final.ckpt").stat().st_mtime_ns == stamp
    seeds = [json.loads((runs / f / "config.json").read_text())["train"]["seed"]
             for f in ("fold_1", "fold_1_seed_1")]  # fmt: skip
    assert seeds == [0, 1]
    assert (runs / "fold_1_seed_1" / "scores.csv").is_file()
    # --report-only without --seeds reports every finished run and the ones still missing
    assert main([*argv, "--report-only"]) == 0
    with open(out / "cases.csv") as fh:
        cases = list(csv.DictReader(fh))
    assert {r["seed"] for r in cases} == {"0", "1"} and {r["fold"] for r in cases} == {"1"}
    assert len((out / "units.csv").read_text().splitlines()) == 1 + 2
    report = (out / "report.md").read_text()
    assert "Not run yet (2): baseline fold 2, baseline fold 2 seed 1" in report
    assert "| baseline | 2 | 0, 1 |" in report  # two runs in the run-level table
    capsys.readouterr()
    assert main([*argv, "--seeds", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds" in err[0], err
