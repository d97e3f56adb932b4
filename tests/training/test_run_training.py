"""run_training end to end with the real data modules: synthetic phantoms, and the real CT sets in
``<repo>/../shared/data`` (skipped where absent)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from _training_fakes import tiny_cfg

from rdcl.training import (
    PRETRAIN_DIR,
    RunExistsError,
    load_checkpoint,
    read_log,
    run_training,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("synth")
    common = {"n_cases": 2, "dim": 2, "shape": (64, 64)}
    covid = synthesize_dataset(root / "covid", kind="covid", seed=0, **common)
    general = synthesize_dataset(root / "general", kind="mixed", seed=1, **common)
    return covid, general


def test_end_to_end_rdcl_on_synthetic_data(tmp_path, synth_data):
    covid, general = synth_data
    cfg = tiny_cfg("rdcl", pretrain_steps=2, steps=3, checkpoint_every=2)
    out = tmp_path / "run"
    final = run_training(cfg, covid, [general], out)  # with the progress bar
    assert final == out / "final.ckpt"
    ck = load_checkpoint(final)
    assert (ck["kind"], ck["stage"], ck["step"]) == ("dual", "train", 3)
    assert ck["dataset"]["name"] == "rdcl-synth-covid" and ck["dataset"]["dim"] == 2
    assert set(ck["intensity"]) == {"mean", "std", "lo", "hi"}
    stage1 = load_checkpoint(out / PRETRAIN_DIR / "final.ckpt")
    assert (stage1["kind"], stage1["stage"], stage1["step"]) == ("single", "pretrain", 2)
    # G started from the stage-1 encoder and was then moved by L_G only
    g0 = {k[8:]: v for k, v in stage1["model"].items() if k.startswith("encoder.")}
    g1 = {k[8:]: v for k, v in ck["model"].items() if k.startswith("general.")}
    assert g0.keys() == g1.keys()
    assert not all(torch.equal(g0[k], g1[k]) for k in g0)
    log = read_log(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in log for k in ("loss", "seg", "d_g", "d_t"))
    assert [r["stage"] for r in read_log(out / PRETRAIN_DIR / "log.jsonl")] == ["pretrain"] * 2
    assert (out / "config.json").is_file() and any((out / "cache").iterdir())

    # an existing run is refused before anything is touched; resume of a finished run is a no-op
    before = {p: p.read_bytes() for p in out.rglob("*.ckpt")}
    with pytest.raises(RunExistsError):
        run_training(cfg, covid, [general], out, progress=False)
    assert run_training(cfg, covid, [general], out, resume=True, progress=False) == final
    assert {p: p.read_bytes() for p in out.rglob("*.ckpt")} == before


def test_methods_without_general_data(tmp_path, synth_data):
    covid, _ = synth_data
    final = run_training(tiny_cfg("baseline", steps=2), covid, [], tmp_path, progress=False)
    assert load_checkpoint(final)["kind"] == "single"
    assert not (tmp_path / PRETRAIN_DIR).exists()
    with pytest.raises(ValueError, match="needs non-COVID lesion data"):
        run_training(tiny_cfg("pretrain"), covid, [], tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()


def test_pretrain_method_uses_given_stage1_checkpoint(tmp_path, synth_data):
    covid, general = synth_data
    stage1 = run_training(
        tiny_cfg("baseline", steps=2), general, [], tmp_path / "g", progress=False
    )  # a single-encoder network of the same architecture stands in for stage 1
    final = run_training(
        tiny_cfg("pretrain", steps=1), covid, [], tmp_path / "p", pretrained=stage1, progress=False
    )
    assert load_checkpoint(final)["kind"] == "single"
    assert not (tmp_path / "p" / PRETRAIN_DIR).exists()


@pytest.mark.parametrize(("augment_on", "thread"), [("loader", False), ("device", True)])
def test_killed_run_resumes_bitwise_with_real_sampler(
    tmp_path, synth_data, monkeypatch, augment_on, thread
):
    """Stage 1 finishes, stage 2 is killed after its step-2 checkpoint; --resume skips stage 1 and
    ends with bitwise the weights of an uninterrupted run (real sampler with augmentation, in the
    loader, or on the training device with batches from a loader thread)."""
    from rdcl.training import stages

    covid, general = synth_data
    cfg = tiny_cfg("rdcl", pretrain_steps=2, steps=4, checkpoint_every=2)
    data = dataclasses.replace(cfg.data, augment_on=augment_on, loader_thread=thread)
    cfg = cfg.replace(data=data)
    assert cfg.data.augment
    straight = run_training(cfg, covid, [general], tmp_path / "a", progress=False)
    real_stream = stages.batch_stream

    def killed(sampler, start, stop, workers, thread=False):
        stream = real_stream(sampler, start, stop, workers, thread)
        for step, batch in zip(range(start, stop), stream, strict=True):
            if step == 3:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(stages, "batch_stream", killed)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, covid, [general], tmp_path / "b", progress=False)
    monkeypatch.setattr(stages, "batch_stream", real_stream)
    stage1 = (tmp_path / "b" / PRETRAIN_DIR / "final.ckpt").read_bytes()
    resumed = run_training(cfg, covid, [general], tmp_path / "b", resume=True, progress=False)
    assert (tmp_path / "b" / PRETRAIN_DIR / "final.ckpt").read_bytes() == stage1
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.realdata
def test_real_data_smoke(tmp_path):
    covid, general = DATA / "covid19_ct100", DATA / "msd_lung_patches"
    if not (covid.is_dir() and general.is_dir()):
        pytest.skip(f"real CT data not found under {DATA.resolve()} (only shipped beside the repo)")
    cfg = tiny_cfg("rdcl", pretrain_steps=1, steps=2, checkpoint_every=2)
    final = run_training(cfg, covid, [general], tmp_path / "run", progress=False)
    ck = load_checkpoint(final)
    assert ck["step"] == 2 and ck["dataset"]["dim"] == 2
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert len(log) == 2 and all(math.isfinite(r["loss"]) and r["d_g"] > 0 for r in log)
