"""The stages end to end on seeded stand-in streams: outputs, log, resume, divergence, refusal."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from _training_fakes import fake_dataset, state_of, tiny_cfg

from rdcl.config import Config
from rdcl.errors import TrainingDivergedError
from rdcl.formats.checkpoint import FORMAT, load_checkpoint
from rdcl.formats.run_log import LOG_KEYS, read_log
from rdcl.training import stages
from rdcl.training.loop import RunExistsError
from rdcl.training.schedule import poly_lr


def _train(cfg, out, pretrained, **kw):
    return stages.train(
        cfg,
        fake_dataset("covid"),
        [fake_dataset("general")],
        out,
        pretrained=pretrained,
        progress=False,
        **kw,
    )


def test_pretrain_outputs(pretrained_ckpt):
    out = pretrained_ckpt.parent
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "final.ckpt",
        "last.ckpt",
        "log.jsonl",
    ]
    ck = load_checkpoint(pretrained_ckpt)
    assert (ck["format"], ck["kind"], ck["stage"], ck["step"]) == (FORMAT, "single", "pretrain", 2)
    assert ck["optimizer"] is None
    assert load_checkpoint(out / "last.ckpt")["optimizer"] is not None
    assert ck["dataset"]["name"] == "general" and ck["dataset"]["dim"] == 2
    # target_spacing "auto" resolves to the cache's grid (the stand-in caches carry none)
    expected = tiny_cfg()
    expected = expected.replace(data=dataclasses.replace(expected.data, target_spacing=None))
    assert Config.from_dict(json.loads((out / "config.json").read_text())) == expected


def test_train_log_and_checkpoint_contents(tmp_path, fake_streams, pretrained_ckpt):
    cfg = tiny_cfg("rdcl")
    final = _train(cfg, tmp_path, pretrained_ckpt)
    ck = load_checkpoint(final)
    assert (ck["kind"], ck["stage"], ck["step"]) == ("dual", "train", 4)
    assert ck["intensity"] == {"mean": 0.0, "std": 1.0, "lo": -3.0, "hi": 3.0}
    assert ck["dataset"] == {
        "name": "covid",
        "dim": 2,
        "normalization": "window",
        "window": [0.0, 255.0],
    }
    native = dataclasses.replace(cfg.data, target_spacing=None)  # "auto" -> the caches' grid
    assert ck["config"] == cfg.replace(data=native).to_dict()
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    log = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for i, r in enumerate(log):
        assert tuple(r) == LOG_KEYS and r["stage"] == "train"
        assert r["lr"] == pytest.approx(poly_lr(i, 4, 0.01))
        # ramp over 2 steps: exp(-5 (1 - min(t/2, 1))^2)
        assert r["ramp"] == pytest.approx(math.exp(-5 * (1 - min(i / 2, 1)) ** 2))
        assert r["loss"] == pytest.approx(r["seg"] + r["loss_g"] + r["loss_t"], rel=1e-5)
        assert r["loss_g"] == pytest.approx(cfg.train.lambda_g * r["ramp"] * r["d_g"], rel=1e-5)
        assert r["loss_t"] == pytest.approx(-cfg.train.lambda_t * r["ramp"] * r["d_t"], rel=1e-5)
        assert r["grad_norm"] > 0 and r["seconds"] > 0
    # every step drew one X_c and one X_n batch, for steps 0..3
    assert sorted(fake_streams["steps"]) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_baseline_logs_nulls_and_needs_no_general(tmp_path, fake_streams):
    final = stages.train(
        tiny_cfg("baseline"), fake_dataset("covid"), None, tmp_path, progress=False
    )
    assert load_checkpoint(final)["kind"] == "single"
    r = read_log(tmp_path / "log.jsonl")[0]
    assert r["loss"] == r["seg"] and r["d_g"] is None and r["loss_t"] is None and r["ramp"] is None


def test_missing_inputs_are_clear_errors(tmp_path, fake_streams, pretrained_ckpt):
    with pytest.raises(ValueError, match="needs a stage-1 network"):
        stages.train(tiny_cfg("backbone"), fake_dataset("covid"), None, tmp_path, progress=False)
    with pytest.raises(ValueError, match="needs a non-COVID dataset"):
        stages.train(tiny_cfg("rdcl"), fake_dataset("c"), [], tmp_path, pretrained=pretrained_ckpt)
    assert list(tmp_path.iterdir()) == []


def test_resume_is_bitwise_identical(tmp_path, fake_streams, pretrained_ckpt, monkeypatch):
    cfg = tiny_cfg("rdcl", steps=4, checkpoint_every=2)
    straight = _train(cfg, tmp_path / "straight", pretrained_ckpt)

    real_stream = stages.batch_stream

    def killed_before_step_4(sampler, start, stop, workers, thread=False):
        for i, b in enumerate(real_stream(sampler, start, stop, workers, thread)):
            if start + i == 3:
                raise KeyboardInterrupt("killed")
            yield b

    monkeypatch.setattr(stages, "batch_stream", killed_before_step_4)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tmp_path / "resumed", pretrained_ckpt)
    assert load_checkpoint(tmp_path / "resumed" / "last.ckpt")["step"] == 2
    assert not (tmp_path / "resumed" / "final.ckpt").exists()
    assert len(read_log(tmp_path / "resumed" / "log.jsonl")) == 3  # step 3 ran, never saved
    monkeypatch.setattr(stages, "batch_stream", real_stream)
    resumed = _train(cfg, tmp_path / "resumed", pretrained_ckpt, resume=True)

    a, b = state_of(straight), state_of(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = read_log(tmp_path / "straight" / "log.jsonl")
    lb = read_log(tmp_path / "resumed" / "log.jsonl")
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == [
        {k: v for k, v in r.items() if k not in drop} for r in lb
    ]


def test_resume_of_finished_run_returns_final(tmp_path, fake_streams):
    cfg = tiny_cfg("baseline", steps=2)
    first = stages.train(cfg, fake_dataset("c"), None, tmp_path, progress=False)
    before = first.read_bytes()
    again = stages.train(cfg, fake_dataset("c"), None, tmp_path, resume=True, progress=False)
    assert again == first and again.read_bytes() == before


def test_resume_with_other_config_is_refused(tmp_path, fake_streams):
    cfg = tiny_cfg("baseline", steps=4, checkpoint_every=2)
    stages.train(cfg, fake_dataset("c"), None, tmp_path, progress=False)
    (tmp_path / "final.ckpt").unlink()
    with pytest.raises(ValueError, match=r"differs .*train.lr"):
        stages.train(
            tiny_cfg("baseline", steps=4, checkpoint_every=2, lr=0.1),
            fake_dataset("c"),
            None,
            tmp_path,
            resume=True,
            progress=False,
        )


def test_resume_may_change_device_and_checkpoint_interval(tmp_path, fake_streams):
    cfg = tiny_cfg("baseline", steps=4, checkpoint_every=2)
    stages.train(cfg, fake_dataset("c"), None, tmp_path / "a", progress=False)
    (tmp_path / "a" / "final.ckpt").unlink()
    other = tiny_cfg("baseline", steps=4, checkpoint_every=3, device="auto")
    final = stages.train(
        other, fake_dataset("c"), None, tmp_path / "a", resume=True, progress=False
    )
    assert load_checkpoint(final)["step"] == 4
    assert [r["step"] for r in read_log(tmp_path / "a" / "log.jsonl")] == [1, 2, 3, 4]


def test_existing_run_is_not_overwritten(tmp_path, fake_streams):
    cfg = tiny_cfg("baseline", steps=2)
    stages.train(cfg, fake_dataset("c"), None, tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RunExistsError, match=r"--resume.*--overwrite"):
        stages.train(cfg, fake_dataset("c"), None, tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    stages.train(cfg, fake_dataset("c"), None, tmp_path, overwrite=True, progress=False)
    assert len(read_log(tmp_path / "log.jsonl")) == 2


@pytest.mark.parametrize(("method", "term"), [("baseline", "seg"), ("rdcl", "d_g")])
def test_nonfinite_loss_stops_with_last_good_checkpoint(
    method, term, tmp_path, fake_streams, pretrained_ckpt, monkeypatch
):
    real_terms = stages.method_terms

    def poisoned(*args, step, **kw):
        terms, ramp = real_terms(*args, step=step, **kw)
        if step == 4:  # the 5th step (1-based step 5)
            terms[term] = terms[term] * float("nan")
        return terms, ramp

    monkeypatch.setattr(stages, "method_terms", poisoned)
    cfg = tiny_cfg(method, steps=6, checkpoint_every=2)
    stage1 = None if method == "baseline" else pretrained_ckpt  # baseline trains from scratch
    with pytest.raises(TrainingDivergedError, match=rf"step 5 \(train\): {term} = nan") as info:
        _train(cfg, tmp_path, stage1)
    assert str(tmp_path / "last.ckpt") in str(info.value)
    good = load_checkpoint(tmp_path / "last.ckpt")
    assert good["step"] == 4
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert not (tmp_path / "final.ckpt").exists()
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2, 3, 4]
