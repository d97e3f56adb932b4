"""One training step of the ``paper3d`` network (Table I, batch 2): single-encoder (baseline) vs
dual-encoder (rdcl: L_seg + L_G + L_T), and each ``train.*`` speed switch on and off.

The step is the one ``rdcl.training.loop.run_stage`` takes: poly lr, zero_grad, forward of
``StepForward`` (G batched over [X_n, X_c] unless ``batched_general=False``), deep-supervised
Dice + BCE and the relation losses, one backward, gradient clip, ONE host transfer of every
logged value, optimiser step. Inputs are synthetic tensors already on the device, except
``test_step_real_loading`` (the memory-mapped cache through 2 loader workers).

Patch: the full 56x160x192 on a GPU, (16, 64, 32) on the CPU (the same network on a patch 53x
smaller; its strides and instance norm allow little less) unless ``RDCL_BENCH_PATCH=z,y,x``.
``torch.compile`` variants run only with ``RDCL_BENCH_COMPILE=1`` (compilation takes minutes);
``cuda_graphs`` (forward+backward replayed as CUDA graphs, ``rdcl.training.graphs.graph_step``)
and the cuDNN/TF32 switches run only on CUDA.
Run:
``OMP_NUM_THREADS=2 python -m pytest bench/test_bench_step.py --benchmark-only``; each row's
extra_info holds the device, patch, ms/step and (CUDA) peak memory. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import torch

from rdcl.config import Config, preset
from rdcl.data import PatchSampler, finish_batch, make_loader
from rdcl.losses import DeepSupervisionLoss, DiceBCELoss
from rdcl.training.graphs import graph_step
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import clip_gradients_tensor, make_optimizer, poly_lr, set_lr
from rdcl.training.stages import method_terms
from rdcl.training.step import (
    StepForward,
    apply_backend_switches,
    compile_step,
    memory_format,
    prepare_network,
    to_device,
)

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PATCH = tuple(
    int(v)
    for v in os.environ.get(
        "RDCL_BENCH_PATCH", "56,160,192" if DEVICE.type == "cuda" else "16,64,32"
    ).split(",")
)
COMPILE = os.environ.get("RDCL_BENCH_COMPILE") == "1"
ROUNDS = 5 if DEVICE.type == "cuda" else 2
STEPS = 10 if DEVICE.type == "cuda" else 1
"""Steps per round (the timing is per step)."""


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _config(method: str, **switches) -> Config:
    cfg = preset("paper3d")
    data = dataclasses.replace(cfg.data, patch_size=PATCH, augment=True)
    train = dataclasses.replace(cfg.train, method=method, device=DEVICE.type, **switches)
    return cfg.replace(data=data, train=train)


class _Step:
    """A model, optimiser and loss set up as ``rdcl.training.stages.train`` does (no pre-trained
    G: random weights time the same)."""

    def __init__(self, cfg: Config) -> None:
        tcfg = cfg.train
        self.cfg, self.method = cfg, get_method(tcfg.method)
        apply_backend_switches(tcfg, DEVICE)
        self.fmt = memory_format(tcfg, cfg.model.dim)
        torch.manual_seed(0)
        state = None
        if self.method.needs_pretrained:
            state = build_for_method(cfg.model, get_method("baseline"), None).state_dict()
        net = build_for_method(cfg.model, self.method, state).to(DEVICE)
        self.net = prepare_network(net, tcfg, cfg.model.dim)
        self.optimizer = make_optimizer(self.net.parameters(), tcfg)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.seg_loss = DeepSupervisionLoss(DiceBCELoss())
        step_net = StepForward(self.net, batched=tcfg.batched_general)
        inputs = 2 if self.method.use_lg else 1
        step_net = graph_step(step_net, cfg, DEVICE, batch=cfg.data.batch_size, inputs=inputs)
        self.forward = compile_step(step_net, tcfg)
        self.step_index = 0

    def batch(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        shape = (self.cfg.data.batch_size, 1, *PATCH)
        x_c, x_n = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        y_c = (torch.rand(shape, generator=g) > 0.9).float()
        return to_device(x_c, DEVICE, self.fmt), y_c.to(DEVICE), to_device(x_n, DEVICE, self.fmt)

    def __call__(self, x_c: torch.Tensor, y_c: torch.Tensor, x_n: torch.Tensor) -> list[float]:
        tcfg = self.cfg.train
        set_lr(self.optimizer, poly_lr(self.step_index % 1000, 1000, tcfg.lr))
        self.optimizer.zero_grad(set_to_none=True)
        terms, _ = method_terms(
            self.net, self.method, x_c=x_c, y_c=y_c, x_n=x_n, step=self.step_index, cfg=tcfg,
            seg_loss=self.seg_loss, forward=self.forward, device=DEVICE,
        )  # fmt: skip
        terms["loss"].backward()
        norm = clip_gradients_tensor(self.params, tcfg.grad_clip)
        values = torch.stack([t.detach().float() for t in terms.values() if t is not None])
        numbers = torch.cat([values, norm.float().reshape(1)]).tolist()  # the one host sync
        self.optimizer.step()
        self.step_index += 1
        return numbers


def _bench(benchmark, cfg: Config, *, batches=None) -> None:
    step = _Step(cfg)
    synthetic = step.batch(0)
    source = batches if batches is not None else (lambda: synthetic)
    step(*source())  # warm-up: cuDNN autotune, compilation, allocator
    _sync()
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run() -> None:
        for _ in range(STEPS):
            step(*source())
        _sync()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    info = {
        "device": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu",
        "patch": list(PATCH),
        "ms_per_step": 1000 * benchmark.stats.stats.min / STEPS,
        "threads": torch.get_num_threads(),
    }
    if DEVICE.type == "cuda":
        info["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    benchmark.extra_info.update(info)


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("method", ["baseline", "rdcl"])
def test_step_default(benchmark, method):
    """Single (baseline) vs dual (rdcl) encoder with the default switches."""
    _bench(benchmark, _config(method))


SWITCHES = {
    "batched_general=False": {"batched_general": False},
    "channels_last": {"channels_last": True},
    "autocast=bf16": {"autocast": "bf16"},
    "fused_sgd": {"fused_sgd": True},
    "cudnn_benchmark": {"cudnn_benchmark": True},
    "tf32=False": {"tf32": False},
    "compile": {"compile": True},
    "cuda_graphs": {"cuda_graphs": True},
    "cuda_graphs+channels_last": {"cuda_graphs": True, "channels_last": True},
}
"""Each switch flipped from its default, one at a time, on the dual-encoder (rdcl) step."""


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("name", list(SWITCHES))
def test_step_switch(benchmark, name):
    if name == "compile" and not COMPILE:
        pytest.skip("torch.compile takes minutes: set RDCL_BENCH_COMPILE=1")
    if name.startswith(("cudnn_benchmark", "tf32=False", "cuda_graphs")) and DEVICE.type != "cuda":
        pytest.skip(f"{name} only exists on CUDA")
    _bench(benchmark, _config("rdcl", **SWITCHES[name]))


@pytest.mark.benchmark(group="step-loading")
@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_step_real_loading(benchmark, cache, augment_on):
    """The dual step fed by the loader (memory-mapped cache, pinned memory) instead
    of synthetic tensors on the device: equal times mean the loader keeps up. With
    ``augment_on="device"`` the loader only crops and the step finishes the batches on the
    device (:func:`rdcl.data.finish_batch`, timed as part of the step), and the batches come
    from a loader thread instead of worker processes (``data.loader_thread``)."""
    cfg = _config("rdcl")
    device_mode = augment_on == "device"
    workers = 0 if device_mode else 2
    data = dataclasses.replace(cfg.data, num_workers=workers, augment_on=augment_on)
    sampler = PatchSampler(cache, data, seed=0)
    pin = DEVICE.type == "cuda"
    loader = iter(make_loader(sampler, 0, 10_000, workers, pin_memory=pin, thread=device_mode))
    fmt = memory_format(cfg.train, cfg.model.dim)

    def batches():
        xc, xn = finish_batch(next(loader), DEVICE), finish_batch(next(loader), DEVICE)
        return (
            to_device(xc["image"], DEVICE, fmt),
            xc["label"].to(DEVICE, non_blocking=True),
            to_device(xn["image"], DEVICE, fmt),
        )

    tic = time.perf_counter()
    _bench(benchmark, cfg, batches=batches)
    benchmark.extra_info["wall_s"] = time.perf_counter() - tic
