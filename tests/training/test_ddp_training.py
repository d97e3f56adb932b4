"""Data-parallel training (rdcl.training.distributed): 2 gloo ranks on the CPU, started by torchrun.

A 2-rank job with global batch 4 (2 per rank) must compute what one process computes with batch 4:
the same losses, gradients and checkpoints (to 1e-5), for stage 1 and for rdcl's stage 2 (batch
Dice, global relation matrices). A failing or killed rank must end the job with its error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ddp_driver import ArrayDataset

from rdcl.config import Config, preset
from rdcl.data import PatchSampler, finish_batch
from rdcl.losses import DiceBCELoss
from rdcl.model import build_network
from rdcl.training.distributed import (
    DistContext,
    ShardedSampler,
    _device_for_rank,
    per_rank_batch,
    setup_distributed,
)
from rdcl.training.step import StepForward

DRIVER = Path(__file__).with_name("_ddp_driver.py")
BACKEND = "gloo" if os.environ.get("RDCL_DDP_DEVICE", "cpu") == "cpu" else "nccl"
"""gloo on the CPU (CI); ``RDCL_DDP_DEVICE=cuda`` runs the same tests with NCCL on 2 GPUs."""
JOB_TIMEOUT = 240  # seconds: a hang fails the test instead of blocking CI


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _single(out: Path, *extra: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(DRIVER), str(out), *extra]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT)


def _torchrun(out: Path, *extra: str, ranks: int = 2) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={ranks}", "--monitor-interval=0.2", str(DRIVER), str(out), *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same run as one process (batch 4) and as 2 gloo ranks (2 + 2)."""
    root = tmp_path_factory.mktemp("ddp")
    _ok(_single(root / "single"))
    _ok(_torchrun(root / "ddp"))
    return {"single": root / "single", "ddp": root / "ddp"}


def test_ddp_step_equals_doubled_batch(runs):
    single = torch.load(runs["single"] / "grads_rank0.pt")
    rank0 = torch.load(runs["ddp"] / "grads_rank0.pt")
    rank1 = torch.load(runs["ddp"] / "grads_rank1.pt")
    for stage, steps in (("pretrain", 2), ("train", 3)):
        assert len(single[stage]) == len(rank0[stage]) == len(rank1[stage]) == steps
        # the first step of each stage: same weights (up to stage 1's 1e-8 differences), same batch
        for a, b in zip(single[stage][0], rank0[stage][0], strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        for g0, g1 in zip(rank0[stage], rank1[stage], strict=True):  # DDP: identical on all ranks
            for a, b in zip(g0, g1, strict=True):
                assert torch.equal(a, b)
    for sub in ("pretrain", "."):
        ref, got = _log(runs["single"] / sub / "log.jsonl"), _log(runs["ddp"] / sub / "log.jsonl")
        assert [r["step"] for r in got] == [r["step"] for r in ref]
        for r, g in zip(ref, got, strict=True):
            for key in ("loss", "seg", "d_g", "d_t", "loss_g", "loss_t"):
                if r[key] is None:
                    assert g[key] is None
                else:
                    assert g[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), key
            assert (r["world_size"], r["batch"], g["world_size"], g["batch"]) == (1, 4, 2, 2)
    assert _log(runs["ddp"] / "log.jsonl")[-1]["d_g"] is not None  # rdcl's relation terms ran


def test_ddp_checkpoints_and_records(runs):
    for sub in ("pretrain", "."):
        ref = torch.load(runs["single"] / sub / "final.ckpt", weights_only=True)
        got = torch.load(runs["ddp"] / sub / "final.ckpt", weights_only=True)
        assert ref["model"].keys() == got["model"].keys()
        for k in ref["model"]:
            torch.testing.assert_close(got["model"][k], ref["model"][k], rtol=1e-5, atol=1e-5)
        assert ref["config"] == got["config"]  # the global batch is the config's: same config
        assert got["distributed"] == {
            "world_size": 2, "per_rank_batch": 2, "global_batch": 4, "backend": BACKEND
        }  # fmt: skip
        config = json.loads((runs["ddp"] / sub / "config.json").read_text())
        assert config["run"]["world_size"] == 2 and config["run"]["per_rank_batch"] == 2
        Config.from_dict(config)  # the run record does not stop the config from loading
    # rank 0 alone writes: one log line per step, no stray files from rank 1
    assert len(_log(runs["ddp"] / "log.jsonl")) == 3


def test_ddp_resume_with_one_rank(runs, tmp_path):
    """A 2-rank run stopped after stage-2 step 2 resumes as ONE process (global batch 4 either
    way) and ends where the uninterrupted run ends."""
    out = tmp_path / "stopped"
    proc = _torchrun(out, "--stop-at", "2")
    assert proc.returncode != 0 and "planned stop before step 2" in proc.stderr + proc.stdout
    assert torch.load(out / "last.ckpt", weights_only=True)["step"] == 2
    _ok(_single(out, "--resume"))
    ref = torch.load(runs["single"] / "final.ckpt", weights_only=True)["model"]
    got = torch.load(out / "final.ckpt", weights_only=True)["model"]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)
    log = _log(out / "log.jsonl")
    assert [(r["step"], r["world_size"]) for r in log] == [(1, 2), (2, 2), (3, 1)]


def test_killed_rank_ends_the_job(tmp_path):
    """Rank 1 dies by SIGKILL mid-training while rank 0 waits in a collective: torchrun ends the
    job with an error naming the signal instead of hanging (subprocess timeout bounds the test)."""
    proc = _torchrun(tmp_path / "killed", "--kill-rank", "1")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "SIGKILL" in text or "Signal 9" in text, text[-3000:]


# ---- single-process pieces ------------------------------------------------------------------


def test_per_rank_batch_must_divide():
    assert per_rank_batch(4, 2) == 2 and DistContext(rank=1, world_size=4).per_rank_batch(8) == 2
    with pytest.raises(ValueError, match=r"multiple of 3, found 4 \(set data.batch_size=3"):
        per_rank_batch(4, 3)
    assert DistContext().record(2) == {
        "world_size": 1, "per_rank_batch": 2, "global_batch": 2, "backend": None
    }  # fmt: skip


def test_sharded_sampler_splits_the_global_batch():
    cfg = preset("tiny2d").data
    import dataclasses

    cfg = dataclasses.replace(cfg, patch_size=(32, 32), batch_size=4)
    sampler = PatchSampler(ArrayDataset("d", 0), cfg, seed=3)
    full = sampler.batch(7)
    parts = [ShardedSampler(sampler, r, 2).batch(7) for r in range(2)]
    for key in ("image", "label", "case"):
        assert torch.equal(torch.cat([p[key] for p in parts]), full[key])
    assert DistContext().shard(sampler) is sampler
    with pytest.raises(ValueError, match="multiple of 3"):
        ShardedSampler(sampler, 0, 3)
    # augmentation on the device: each rank finishes its own samples, the same ones
    deferred = PatchSampler(ArrayDataset("d", 0), cfg, seed=3, augment_on="device")
    full = finish_batch(deferred.batch(7), "cpu")
    parts = [finish_batch(ShardedSampler(deferred, r, 2).batch(7), "cpu") for r in range(2)]
    for key in ("image", "label", "case"):
        assert torch.equal(torch.cat([p[key] for p in parts]), full[key])


def test_dice_sync_is_identity_without_process_group():
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    a = DiceBCELoss(sync=True)(logits, target)
    assert torch.equal(a, DiceBCELoss()(logits, target))


def test_batched_general_forward_matches_two_calls():
    torch.manual_seed(0)
    cfg = preset("tiny2d").model
    net = build_network(cfg, kind="dual")
    x_c, x_n = torch.randn(2, 1, 32, 32), torch.randn(3, 1, 32, 32)
    batched = StepForward(net, batched=True)(x_c, x_n)
    separate = StepForward(net, batched=False)(x_c, x_n)
    for a, b in zip(batched[0], separate[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(batched[1:], separate[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert batched[3].shape[0] == 3 and bool(torch.isfinite(batched[3]).all())


def test_setup_without_torchrun_is_one_process(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    ctx, device = setup_distributed("cpu")
    assert ctx == DistContext() and device == torch.device("cpu") and not ctx.active


def test_setup_refuses_a_broken_launch_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match=r"launcher set no \['MASTER_ADDR'"):
        setup_distributed("cpu")
    with pytest.raises(ValueError, match="each rank trains on cuda:LOCAL_RANK"):
        _device_for_rank("cuda:1", 0, 2)
