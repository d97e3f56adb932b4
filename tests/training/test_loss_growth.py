"""A finite loss grown by orders of magnitude is a divergence (issue 18, item 5: ``train.lr=1e4``
trained to a loss of 3e7 and exited 0 with no word)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdcl.cli import main
from rdcl.errors import CheckpointError, TrainingDivergedError
from rdcl.training.divergence import (
    GROWTH_FACTOR,
    GROWTH_FLOOR,
    GROWTH_PATIENCE,
    LossGrowthGuard,
    check_finite,
)


def _feed(values, *, finish: bool = True) -> LossGrowthGuard:
    guard = LossGrowthGuard("train")
    for i, v in enumerate(values):
        guard.update(v, step=i + 1, last_good=None)
    if finish:
        guard.finish(len(values), None)
    return guard


def test_the_rule_and_its_constants():
    assert (GROWTH_FACTOR, GROWTH_FLOOR, GROWTH_PATIENCE) == (100.0, 0.1, 5)
    # a sustained rise above 100 x the smallest value stops the run at the 5th step above it
    with pytest.raises(TrainingDivergedError, match=r"step 6 .*since step 2") as info:
        _feed([1.8, 2e5, 1e5, 5e7, 3e8, 7e7, 3e7])
    assert "lower train.lr" in str(info.value) and "\n" not in str(info.value)
    # the last step of the stage above the threshold also counts (a short run)
    with pytest.raises(TrainingDivergedError, match="step 3"):
        _feed([1.8, 2e5, 1e5])


def test_the_message_says_which_checkpoint_is_left(tmp_path):
    with pytest.raises(TrainingDivergedError) as none_yet:
        _feed([1.8, 2e5, 1e5])
    assert str(none_yet.value).endswith("(lower train.lr); no checkpoint written")
    guard = LossGrowthGuard("train")
    last = tmp_path / "last.ckpt"
    with pytest.raises(TrainingDivergedError) as with_last:
        for i, v in enumerate([1.8, 2e5, 1e5]):
            guard.update(v, step=i + 1, last_good=last)
        guard.finish(3, last)
    assert str(with_last.value).endswith(
        f"no final checkpoint written ({last} may hold weights of the diverging steps)"
    )


@pytest.mark.parametrize(
    "values",
    [
        [1.7, 1.5, 1.2, 0.9, 0.8, 0.7, 0.6, 0.5],  # normal training
        [1.0, 0.9, 150.0, 0.8, 0.7],  # a lone spike
        [1.0, *[150.0] * (GROWTH_PATIENCE - 1), 0.9, 0.8],  # a burst shorter than the patience
        [0.001, 0.002, 5.0, 9.0, 9.9, 9.0, 8.0, 7.0],  # near 0: the floor keeps 10 as the bar
        [1.0, float("nan"), None, 0.9],  # non-finite values are check_finite's
    ],
    ids=["normal", "spike", "burst", "floor", "nonfinite"],
)
def test_normal_training_never_fires(values):
    guard = _feed(values)
    assert guard.over == 0


def test_a_finite_divergence_stops_rdcl_train(tmp_path, capsys, monkeypatch):
    """The reported case end to end: one line, exit 2, no final checkpoint."""
    from rdcl.data.synth import synthesize_dataset

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = Path(synthesize_dataset(tmp_path / "covid", kind="covid", n_cases=2, dim=2,
                                   shape=(40, 40), seed=0))  # fmt: skip
    run = tmp_path / "run"
    argv = ["train", "-q", "--data", str(data), "--out", str(run), "--preset", "tiny2d",
            "--method", "baseline", "--set", "train.steps=12", "--set", "train.device=cpu",
            "--set", "data.patch_size=[32,32]", "--set", "train.checkpoint_every=1"]  # fmt: skip
    assert main([*argv, "--set", "train.lr=1e4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "segmentation loss" in err[0]
    assert not (run / "final.ckpt").exists()
    # the same run at the default learning rate finishes
    assert main([*argv, "--overwrite"]) == 0
    losses = [json.loads(line)["seg"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and max(losses) < GROWTH_FACTOR * GROWTH_FLOOR


def test_guard_state_round_trip_and_old_or_damaged_entries():
    guard = _feed([1.8, 1.2, 2e5, 1e5], finish=False)
    fresh = LossGrowthGuard("train")
    fresh.load_state_dict(guard.state_dict())
    assert fresh.state_dict() == guard.state_dict() == {
        "baseline": 1.2, "over": 2, "since": 3, "last": 1e5,
    }  # fmt: skip
    # two more steps above the threshold make five: the restored guard stops as the original would
    for step, value in ((5, 3e7), (6, 4e7)):
        fresh.update(value, step=step, last_good=None)
    with pytest.raises(TrainingDivergedError, match=r"step 7 .*since step 3"):
        fresh.update(5e7, step=7, last_good=None)
    old = LossGrowthGuard("train")
    old.load_state_dict(None)  # a checkpoint written before the guard was saved: a fresh guard
    assert old.state_dict() == LossGrowthGuard("train").state_dict()
    for damaged in ({"baseline": "x", "over": 0, "since": None, "last": None}, {"over": -1}, [1]):
        with pytest.raises(CheckpointError, match="'loss_growth' entry"):
            LossGrowthGuard("train").load_state_dict(damaged, path=Path("last.ckpt"))


def _train_argv(data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "-q", "--data", str(data), "--out", str(run), "--preset", "tiny2d",
            "--method", "baseline", "--set", "train.steps=12", "--set", "train.device=cpu",
            "--set", "data.patch_size=[32,32]", "--set", "train.checkpoint_every=1",
            "--set", "train.lr=1e4", *extra]  # fmt: skip


def test_resume_keeps_the_guard_baseline(tmp_path, capsys, monkeypatch):
    """A diverging run resumed from its last checkpoint stops at the same step with the same
    line: the guard's running minimum and count come back from ``last.ckpt`` (they restarted
    from the resumed loss before, so the resumed run went on from a loss of ~1e7 as normal)."""
    import torch

    from rdcl.data.synth import synthesize_dataset

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = Path(synthesize_dataset(tmp_path / "covid", kind="covid", n_cases=2, dim=2,
                                   shape=(40, 40), seed=0))  # fmt: skip
    run = tmp_path / "run"
    assert main(_train_argv(data, run)) == 2
    straight = capsys.readouterr().err.strip().splitlines()
    assert len(straight) == 1 and "training diverged" in straight[0], straight
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert ckpt["loss_growth"]["over"] >= 1  # saved while the loss was above the threshold
    assert main(_train_argv(data, run, "--resume")) == 2
    assert capsys.readouterr().err.strip().splitlines() == straight
    assert not (run / "final.ckpt").exists()


def test_check_finite_names_step_and_term(tmp_path):
    check_finite({"loss": 1.0, "d_g": None}, step=3, stage="train", last_good=None)
    with pytest.raises(TrainingDivergedError) as info:
        check_finite(
            {"loss": 1.0, "d_g": float("nan")}, step=7, stage="train", last_good=tmp_path / "x"
        )
    msg = str(info.value)
    assert "step 7" in msg and "d_g = nan" in msg and str(tmp_path / "x") in msg
    with pytest.raises(TrainingDivergedError, match="grad_norm = inf"):
        check_finite({"grad_norm": float("inf")}, step=1, stage="pretrain", last_good=None)
