from __future__ import annotations

import dataclasses
import json

import pytest

from rdcl.config import Config, ConfigError, ModelConfig, TrainConfig, load_config, preset


def test_paper_preset_is_table_one():
    cfg = preset("paper3d")
    assert cfg.model.features == (32, 64, 128, 256, 320, 320)
    assert cfg.model.kernels[0] == (1, 3, 3)
    assert cfg.model.strides[1] == (1, 2, 2) and cfg.model.strides[5] == (1, 2, 2)
    assert cfg.model.total_stride() == (8, 32, 32)  # 56x160x192 patch is a multiple of it
    assert cfg.data.patch_size == (56, 160, 192) and cfg.data.batch_size == 2
    t = cfg.train
    assert (t.lr, t.momentum, t.nesterov, t.weight_decay) == (0.01, 0.99, True, 3e-5)
    assert (t.poly_exponent, t.grad_clip) == (0.9, 12.0)


@pytest.mark.parametrize("name", ["paper3d", "paper2d", "tiny3d", "tiny2d"])
def test_presets_round_trip_json_and_yaml(tmp_path, name):
    cfg = preset(name)
    for suffix in (".json", ".yaml"):
        p = tmp_path / f"cfg{suffix}"
        cfg.save(p)
        assert load_config(p) == cfg


def test_overrides_parse_values():
    cfg = preset("tiny3d").override(["train.lr=0.5", "data.patch_size=[8,64,64]"])
    assert cfg.train.lr == 0.5
    assert cfg.data.patch_size == (8, 64, 64)


@pytest.mark.parametrize(
    "items, match",
    [
        (["train.nope=1"], "unknown config key"),
        (["lr=1"], "section.key=value"),
        (["train.method=magic"], "train.method"),
        (["data.patch_size=[15,32,32]"], "multiple of the network's total stride"),
        (["data.patch_size=[32,32]"], "must have 3 entries"),
        (["train.lambda_t=-0.1"], "train.lambda_t must be >= 0"),
        (["train.weight_decay=.nan"], "train.weight_decay"),
        (["train.momentum=1.0"], "train.momentum"),
    ],
)
def test_bad_overrides(items, match):
    with pytest.raises(ConfigError, match=match):
        preset("tiny3d").override(items)


def test_unknown_keys_in_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"train": {"learning_rate": 1}}))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_are_paper3d():
    assert Config() == preset("paper3d")


def test_no_invalid_config_can_be_built():
    """Every way of making a config checks it (issue 12, item 7): constructors,
    dataclasses.replace on a section or on the whole config, and Config.replace give the same
    one-line ConfigError as a file or --set would."""
    cfg = preset("tiny3d")
    with pytest.raises(ConfigError, match=r"model\.dim must be 2 or 3, found 4"):
        ModelConfig(dim=4)
    with pytest.raises(ConfigError, match=r"data\.batch_size must be >= 1, found 0"):
        dataclasses.replace(cfg.data, batch_size=0)
    with pytest.raises(ConfigError, match=r"train\.snapshots: expected an integer >= 0"):
        dataclasses.replace(cfg.train, snapshots=-1)
    with pytest.raises(ConfigError, match=r"train\.lr must be a finite number > 0, found 0"):
        TrainConfig(lr=0)
    odd = dataclasses.replace(cfg.data, patch_size=(15, 32, 32))  # fine on its own ...
    with pytest.raises(ConfigError, match="multiple of the network's total stride") as built:
        dataclasses.replace(cfg, data=odd)  # ... not with tiny3d's network
    with pytest.raises(ConfigError) as overridden:
        cfg.override(["data.patch_size=[15,32,32]"])
    assert str(built.value) == str(overridden.value)
    with pytest.raises(ConfigError, match="must have 3 entries"):
        cfg.replace(data=dataclasses.replace(cfg.data, patch_size=(32, 32)))
    with pytest.raises(ConfigError, match="must have 2 entries"):
        Config(model=preset("tiny2d").model, data=cfg.data)
    with pytest.raises(ConfigError, match="config section 'train' must be a TrainConfig"):
        Config(train={"lr": 0.1})  # type: ignore[arg-type]


@pytest.mark.parametrize("spacing", ["[0,1]", "[-1,1]", "[1,.nan]"])
def test_non_positive_target_spacing_is_a_config_error(spacing):
    # A zero target spacing used to reach resampling and escape as ZeroDivisionError.
    with pytest.raises(ConfigError, match="target_spacing"):
        preset("tiny2d").override([f"data.target_spacing={spacing}"])
