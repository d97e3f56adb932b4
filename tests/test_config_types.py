"""Every config value is coerced to and checked against its declared type (issue 11, item 10 and
the lr half of item 6): JSON/YAML files and ``--set`` overrides alike, one line naming the key,
the expected type and the value."""

from __future__ import annotations

import dataclasses
import json
import typing

import numpy as np
import pytest

from rdcl.config import Config, ConfigError, TrainConfig, load_config, preset

SECTIONS = ("model", "data", "train")


def _all_keys() -> list[tuple[str, str]]:
    cfg = Config()
    return [(s, f.name) for s in SECTIONS for f in dataclasses.fields(getattr(cfg, s))]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_lr_written_as_1e_minus_3_is_a_float():
    # PyYAML reads 1e-3 (no dot) as a string: it used to reach the optimiser as one.
    cfg = preset("tiny3d").override(["train.lr=1e-3"])
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert preset("tiny3d").override(["train.steps=1e3"]).train.steps == 1000
    assert preset("tiny3d").override(["data.augment=no"]).data.augment is False


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("train.steps=abc", "train.steps", "integer"),
        ("train.steps=2.5", "train.steps", "integer"),
        ("train.steps=true", "train.steps", "integer"),
        ("train.seed=-1", "train.seed", "integer >= 0"),
        ("train.log_every=abc", "train.log_every", "integer"),
        ("data.patch_size=16", "data.patch_size", "list of integers"),
        ("data.patch_size=[16,32,abc]", "data.patch_size", "list of integers"),
        ("data.augment=maybe", "data.augment", "true or false"),
        ("data.augment=2", "data.augment", "true or false"),
        ("data.window=[1]", "data.window", "list of 2 numbers"),
        ("data.target_spacing=abc", "data.target_spacing", "or null"),
        ("data.normalization=3", "data.normalization", "string"),
        ("train.method=[rdcl]", "train.method", "string"),
        ("train.momentum=fast", "train.momentum", "number"),
        ("train.lr=.nan", "train.lr", "finite"),
        ("train.lr=nan", "train.lr", "finite"),
        ("train.lr=.inf", "train.lr", "finite"),
        ("train.lr=-.inf", "train.lr", "finite"),
        ("model.kernels=[[1,3,3],3,[3,3,3],[3,3,3]]", "model.kernels", "lists of integers"),
        ("model.features=[4,8,16,16.5]", "model.features", "integers"),
    ],
)
def test_bad_override_names_key_type_and_value(item, key, expected):
    with pytest.raises(ConfigError) as info:
        preset("tiny3d").override([item])
    text = _one_line(info)
    assert key in text and expected in text
    assert item.split("=", 1)[1].strip("[]").split(",")[-1].lstrip(".-") in text.lower()


@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
def test_lr_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"train.lr"):
        preset("tiny3d").override([f"train.lr={value}"])


def test_non_finite_lr_refused_from_python_too():
    for lr in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"train.lr"):
            TrainConfig(lr=lr)


def test_broken_yaml_value_is_one_line():
    with pytest.raises(ConfigError) as info:
        preset("tiny3d").override(["data.patch_size=[16,32"])
    assert "data.patch_size" in _one_line(info)


@pytest.mark.parametrize(
    "text", ["train: {lr: 0.1\n", "train:\n  lr: 0.1\n bad: [\n", "data: [1, 2\n", "\tmodel: 1"]
)
def test_broken_yaml_file_is_one_line(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    line = _one_line(info)
    assert str(p) in line and "line" in line


def test_yaml_and_json_files_are_coerced(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  lr: 1e-3\n  steps: 10\ndata:\n  augment: off\n")
    cfg = load_config(y)
    assert cfg.train.lr == 0.001 and cfg.train.steps == 10 and cfg.data.augment is False
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"train": {"steps": "abc"}}))
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer >= 0, found 'abc'"):
        load_config(j)
    j.write_text(json.dumps({"data": {"patch_size": 16}}))
    with pytest.raises(ConfigError, match=r"data.patch_size"):
        load_config(j)
    j.write_text(json.dumps({"train": {1: 2}}).replace('"1"', "1"))  # invalid JSON: one line
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(j)


@pytest.mark.parametrize(("section", "name"), _all_keys())
def test_every_field_is_type_checked(section, name):
    # Generic: a value of the wrong kind for every declared field, from a file and from --set.
    d = Config().to_dict()
    d[section][name] = {"not": "a valid value"}
    with pytest.raises(ConfigError) as info:
        Config.from_dict(d)
    assert f"{section}.{name}" in _one_line(info)
    with pytest.raises(ConfigError) as info:
        Config().override([f"{section}.{name}={{not: a valid value}}"])
    assert f"{section}.{name}" in _one_line(info)


@pytest.mark.parametrize(("section", "name"), _all_keys())
def test_every_field_round_trips_as_its_declared_type(section, name):
    cfg = Config()
    back = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    value = getattr(getattr(back, section), name)
    assert value == getattr(getattr(cfg, section), name)
    hint = typing.get_type_hints(type(getattr(cfg, section)))[name]
    if hint in (int, float, bool, str):
        assert type(value) is hint


def test_python_built_sections_are_checked():
    with pytest.raises(ConfigError, match=r"train.steps"):
        TrainConfig(steps="10")  # type: ignore[arg-type]
    cfg = preset("tiny3d")
    ok = dataclasses.replace(cfg.data, patch_size=tuple(np.array([16, 32, 32])))
    assert cfg.replace(data=ok).data.patch_size == (16, 32, 32)  # numpy ints are integers


def test_target_spacing_needs_one_entry_per_axis():
    with pytest.raises(ConfigError, match=r"data.target_spacing must have 3 entries"):
        preset("tiny3d").override(["data.target_spacing=[1.0, 2.0]"])
    assert preset("tiny3d").override(["data.target_spacing=[2, 1, 1]"]).data.target_spacing == (
        2.0,
        1.0,
        1.0,
    )


def test_model_sizes_must_be_positive():
    with pytest.raises(ConfigError, match=r"model.features"):
        preset("tiny3d").override(["model.features=[4,0,16,16]"])
    with pytest.raises(ConfigError, match=r"model.num_classes"):
        preset("tiny3d").override(["model.num_classes=0"])


def test_cli_reports_bad_values_in_one_line(tmp_path, capsys):
    from rdcl.cli import main

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--kind", "covid", "--cases", "1", "-q",
                 "--dim", "2", "--shape", "32,32"]) == 0  # fmt: skip
    base = ["preprocess", "--data", str(data), "--out", str(tmp_path / "c"), "--preset", "tiny2d"]
    for item, key in (("data.augment=maybe", "data.augment"), ("train.lr=abc", "train.lr")):
        capsys.readouterr()
        assert main([*base, "--set", item]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0] and "Traceback" not in err[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: 0.1\n")
    capsys.readouterr()
    argv = ["preprocess", "--data", str(data), "--out", str(tmp_path / "c"), "--config", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot parse config file" in err[0]
    assert not (tmp_path / "c").exists()
