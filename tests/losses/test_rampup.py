"""The relation-loss ramp length: a fraction of the stage-2 steps, or absolute steps (issue 17)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rdcl.config import (
    DEFAULT_RAMPUP_FRACTION,
    Config,
    ConfigError,
    TrainConfig,
    load_config,
    preset,
)
from rdcl.losses import describe_rampup, resolved_rampup_steps

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_ramp_is_a_fraction_of_the_stage_steps() -> None:
    cfg = TrainConfig()
    assert cfg.rampup_steps is None and cfg.rampup_fraction == DEFAULT_RAMPUP_FRACTION == 0.6
    assert resolved_rampup_steps(cfg) == 600  # of the default 1000 steps
    # the ramp scales with training: 60 % of the documented 250,000-step 3D run, not 200 steps
    assert resolved_rampup_steps(TrainConfig(steps=250_000)) == 150_000
    assert resolved_rampup_steps(TrainConfig(steps=7, rampup_fraction=0.5)) == 4  # 3.5 rounds up
    assert resolved_rampup_steps(TrainConfig(steps=1, rampup_fraction=0.3)) == 0  # no ramp
    assert resolved_rampup_steps(TrainConfig(rampup_fraction=0.0)) == 0
    assert resolved_rampup_steps(TrainConfig(steps=400, rampup_fraction=1.0)) == 400


def test_absolute_steps_win_over_the_fraction() -> None:
    cfg = TrainConfig(steps=1000, rampup_steps=200, rampup_fraction=0.5)
    assert resolved_rampup_steps(cfg) == 200
    assert describe_rampup(cfg) == (
        "200 of 1000 steps (train.rampup_steps 200; train.rampup_fraction ignored)"
    )
    assert describe_rampup(TrainConfig()) == "600 of 1000 steps (train.rampup_fraction 0.6)"
    assert resolved_rampup_steps(TrainConfig(rampup_steps=0)) == 0  # 0 still means no ramp
    assert resolved_rampup_steps(TrainConfig(steps=40, rampup_fraction=0.25)) == 10


def test_configs_written_before_the_fraction_keep_their_meaning() -> None:
    # a config.json / checkpoint config of recipe 1 always carries rampup_steps (default 200)
    old = Config().to_dict()
    old["train"]["rampup_steps"] = 200
    del old["train"]["rampup_fraction"]
    cfg = Config.from_dict(old)
    assert cfg.train.rampup_steps == 200 and resolved_rampup_steps(cfg.train) == 200
    cleared = cfg.override(["train.rampup_steps=null", "train.rampup_fraction=0.4"])
    assert resolved_rampup_steps(cleared.train) == 400


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, r"^train\.rampup_fraction must be in \[0, 1\], found 1\.5$"),
        (-0.1, r"^train\.rampup_fraction must be in \[0, 1\], found -0\.1$"),
        (float("nan"), r"^config key train\.rampup_fraction: expected a finite number, found nan$"),
    ],
)
def test_fraction_outside_0_1_is_one_config_error(value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(rampup_fraction=value)


def test_bad_values_from_the_command_line_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"train\.rampup_fraction"):
        Config().override(["train.rampup_fraction=abc"])
    with pytest.raises(ConfigError, match=r"train\.rampup_steps"):
        Config().override(["train.rampup_steps=-3"])


def test_presets_and_study_configs_keep_their_ramp() -> None:
    # tiny presets: 10 of 20 steps, as when they set rampup_steps: 10; the study configs: 500 of
    # 1500 and (the recorded study) 150 of 400, as when they set rampup_steps
    for name in ("tiny3d", "tiny2d"):
        train = preset(name).train
        assert train.rampup_steps is None and resolved_rampup_steps(train) == 10
    study = load_config(CONFIGS / "study2d" / "study2d.yaml").train
    assert study.rampup_steps is None and resolved_rampup_steps(study) == 500
    cpu = load_config(CONFIGS / "study2d" / "study2d_cpu.yaml").train
    assert cpu.rampup_steps is None and resolved_rampup_steps(cpu) == 150
    # the fraction follows a change of steps (--set train.steps=800 doubles the ramp)
    assert resolved_rampup_steps(dataclasses.replace(cpu, steps=800)) == 300
