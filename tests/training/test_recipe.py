"""The recipe version in checkpoints, and the resolved ramp on a real (tiny) stage-2 run."""

from __future__ import annotations

import logging
import math

import pytest
from _training_fakes import fake_dataset, tiny_cfg

from rdcl.config import Config
from rdcl.errors import CheckpointError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_log import read_log
from rdcl.losses import resolved_rampup_steps
from rdcl.training import stages
from rdcl.training.recipe import RECIPE_KEY, RECIPE_VERSION, recipe_version


def test_recipe_version_of_old_and_new_checkpoints() -> None:
    assert RECIPE_VERSION == 2
    assert recipe_version({"format": "rdcl-checkpoint/1"}) == 1  # written before the entry
    assert recipe_version({RECIPE_KEY: 2}) == 2
    for bad in ("2", 0, True, 2.0):
        with pytest.raises(CheckpointError, match="'recipe' must be an integer >= 1"):
            recipe_version({RECIPE_KEY: bad})


def test_both_stages_write_the_recipe_and_the_ramp_is_resolved_once(
    tmp_path, fake_streams, pretrained_ckpt, caplog
) -> None:
    assert recipe_version(load_checkpoint(pretrained_ckpt)) == RECIPE_VERSION
    # the fraction, not absolute steps: 0.5 of 4 steps -> a ramp over 2 steps
    cfg = tiny_cfg("rdcl", rampup_steps=None, rampup_fraction=0.5)
    with caplog.at_level(logging.INFO, logger="rdcl.training.stages"):
        final = stages.train(
            cfg,
            fake_dataset("covid"),
            [fake_dataset("general")],
            tmp_path,
            pretrained=pretrained_ckpt,
            progress=False,
        )
    assert "relation weights ramped up over 2 of 4 steps (train.rampup_fraction 0.5)" in (
        caplog.text
    )
    ckpt = load_checkpoint(final)
    assert ckpt[RECIPE_KEY] == RECIPE_VERSION
    assert recipe_version(load_checkpoint(tmp_path / "last.ckpt")) == RECIPE_VERSION
    saved = Config.from_dict(ckpt["config"]).train
    assert saved.rampup_steps is None and resolved_rampup_steps(saved) == 2
    ramps = [r["ramp"] for r in read_log(tmp_path / "log.jsonl")]
    assert ramps == pytest.approx([math.exp(-5 * (1 - min(i / 2, 1)) ** 2) for i in range(4)])
