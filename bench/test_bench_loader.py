"""Loader throughput for the ``paper3d`` patch (56x160x192, batch 2, nnU-Net augmentation) on the
CPU: patches per second from the memory-mapped cache, drawn in the main process or by 2 worker
processes, against the same draws from arrays held in RAM; and rdcl's separable spatial engine
against the scipy ``map_coordinates`` reference on the same draws (``ScipyPatchSampler`` of
``tests/data/sampling/_spatial_reference.py``, which bench/conftest.py puts on ``sys.path``; every
test draws the same steps, so rows of one run compare like with like).

Run: ``OMP_NUM_THREADS=1 python -m pytest bench/test_bench_loader.py --benchmark-only``
(``patches_per_s`` (best round) and ``patches_per_s_mean`` (all rounds) are in each row's
extra_info, and for the in-process rows ``cpu_s_per_patch``, the process's CPU time per patch,
which a loaded machine inflates far less than wall time; results in bench/RESULTS.md). Not part
of the test suite (``testpaths`` is ``tests``). The cached dataset (``cache``) is built in
bench/conftest.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from _spatial_reference import ScipyPatchSampler

from rdcl.config import preset
from rdcl.data import PatchSampler, finish_batch, make_loader
from rdcl.data.preprocessing.preprocess import CachedDataset

STEPS = 8
"""Batches per benchmark round (16 patches; about a third of them rotated or scaled)."""

ROUNDS = 3


class _InRam:
    """The cached dataset's arrays copied into RAM (what format 1 held after the first read)."""

    def __init__(self, ds: CachedDataset) -> None:
        self.ds = ds
        self.arrays = [(np.array(ds[i][0]), np.array(ds[i][1])) for i in range(len(ds))]

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        return self.arrays[i]

    def foreground(self, i: int) -> np.ndarray:
        return self.ds.foreground(i)


def _run(benchmark, dataset, workers: int, engine: str = "separable") -> None:
    sampler_class = ScipyPatchSampler if engine == "scipy" else PatchSampler
    sampler = sampler_class(dataset, preset("paper3d").data, seed=0)
    batch = sampler.batch_size
    state = {"start": 0, "cpu": 0.0}

    def draw() -> int:
        start = state["start"]
        state["start"] += STEPS
        n = 0
        cpu = time.process_time()
        loader = make_loader(sampler, start, start + STEPS, workers, pin_memory=False)
        for b in loader:
            n += b["image"].shape[0]
        state["cpu"] += time.process_time() - cpu
        return n

    n = benchmark.pedantic(draw, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert n == STEPS * batch
    stats = benchmark.stats.stats
    benchmark.extra_info.update(
        patches_per_s=STEPS * batch / stats.min,
        patches_per_s_mean=STEPS * batch / stats.mean,
        workers=workers,
        engine=engine,
    )
    if workers == 0:  # CPU time of this process: what the patches cost, whatever the load
        cpu_per_patch = state["cpu"] / (ROUNDS * STEPS * batch)
        benchmark.extra_info.update(cpu_s_per_patch=cpu_per_patch)


@pytest.mark.benchmark(group="loader-paper3d")
def test_loader_mmap_inline(benchmark, cache):
    _run(benchmark, cache, 0)


@pytest.mark.benchmark(group="loader-paper3d")
def test_loader_mmap_2_workers(benchmark, cache):
    _run(benchmark, cache, 2)


@pytest.mark.benchmark(group="loader-paper3d")
def test_loader_ram_inline(benchmark, cache):
    _run(benchmark, _InRam(cache), 0)


@pytest.mark.benchmark(group="loader-paper3d")
def test_loader_mmap_inline_scipy_engine(benchmark, cache):
    _run(benchmark, cache, 0, "scipy")


@pytest.mark.benchmark(group="loader-paper3d")
def test_loader_mmap_2_workers_scipy_engine(benchmark, cache):
    _run(benchmark, cache, 2, "scipy")


STEADY_STEPS = {"loader": 40, "device": 200}
"""Batches of the steady-state rows (80 and 400 patches, a few seconds each): enough that the
workers' start-up, which the 16-patch rows above pay every round, is left out of the rate."""


@pytest.mark.benchmark(group="loader-paper3d-steady")
@pytest.mark.parametrize("augment_on", ["loader", "device"])
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_mmap_steady_state(benchmark, cache, workers, augment_on):
    """Patches per second once the loader runs: the time from the first batch to the last
    (worker start-up and the first batch excluded), the rate the training step sees.
    ``augment_on="device"``: the loader only crops (the augmentation is then
    :func:`test_finish_on_device`'s cost, on the training device)."""
    sampler = PatchSampler(cache, preset("paper3d").data, seed=0, augment_on=augment_on)
    steps, rates = STEADY_STEPS[augment_on], []

    def draw() -> int:
        loader = make_loader(sampler, 0, steps, workers, pin_memory=False)
        it = iter(loader)
        n = len(next(it)["case"])
        tic, after_first = time.perf_counter(), 0
        for b in it:
            after_first += len(b["case"])
        rates.append(after_first / (time.perf_counter() - tic))
        return n + after_first

    n = benchmark.pedantic(draw, rounds=1, iterations=1, warmup_rounds=0)
    assert n == steps * sampler.batch_size
    benchmark.extra_info.update(
        steady_patches_per_s=rates[-1], workers=workers, augment_on=augment_on
    )


FINISH_BATCHES = 10


@pytest.mark.benchmark(group="loader-paper3d-finish")
def test_finish_on_device(benchmark, cache):
    """What ``data.augment_on: device`` adds to the step: :func:`rdcl.data.finish_batch` of a
    deferred ``paper3d`` batch (copy of the source regions to the device, grid_sample, flips,
    intensity) on CUDA when available, else on the CPU (1 intra-op thread unless
    OMP_NUM_THREADS says otherwise). Every augmentation fires at nnU-Net's probabilities."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sampler = PatchSampler(cache, preset("paper3d").data, seed=0, augment_on="device")
    batches = [sampler.batch(step) for step in range(FINISH_BATCHES)]
    if device.type == "cuda":
        batches = [pin_batch(b) for b in batches]

    def finish() -> int:
        n = 0
        for b in batches:
            n += finish_batch(b, device)["image"].shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n

    n = benchmark.pedantic(finish, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert n == FINISH_BATCHES * sampler.batch_size
    spatial = sum(r.spatial for b in batches for r in b["recipe"])
    benchmark.extra_info.update(
        device=str(device),
        ms_per_batch=1e3 * benchmark.stats.stats.min / FINISH_BATCHES,
        transformed_samples=spatial,
    )


def pin_batch(batch: dict) -> dict:
    """A deferred batch with its source regions in page-locked memory (as the loader pins)."""
    pin = {k: [t.pin_memory() for t in batch[k]] for k in ("source_image", "source_label")}
    return {**batch, **pin}


STEP_S = 0.040
"""The simulated training step: the H100 target for the dual step (issue 10), spent with the GIL
released (as a GPU step waits in its one host synchronisation)."""

FEED_STEPS = 40

PIN = torch.cuda.is_available()
"""Page-locked batches where a GPU would receive them (as training does), not on the CPU."""

FEEDS = {
    "loader-mode, 1 worker per stream": ("loader", 1, False),
    "device-mode, 1 worker per stream": ("device", 1, False),
    "device-mode, 2 workers per stream": ("device", 2, False),
    "device-mode, main process": ("device", 0, False),
    "device-mode, loader thread": ("device", 0, True),
}
"""How each stream is loaded: ``(augment_on, num_workers, loader thread)``."""


@pytest.mark.benchmark(group="loader-paper3d-feeds-step")
@pytest.mark.parametrize("feed", list(FEEDS))
def test_loader_feeds_a_40ms_dual_step(benchmark, cache, feed):
    """Does the loader keep a 40 ms dual step busy? Two streams as in training (X_c and X_n, one
    batch of 2 each per step, seeds 0 and 1, the same cache), a consumer that spends
    :data:`STEP_S` per step with the GIL released; reported: ms per step (40 = the loader keeps
    up) and the patches/s delivered (100 at 40 ms), steady state (first step excluded). Batches
    are pinned on a machine with CUDA (the copy into page-locked memory is loader work there)."""
    augment_on, workers, thread = FEEDS[feed]
    data = preset("paper3d").data
    samplers = [PatchSampler(cache, data, seed=s, augment_on=augment_on) for s in (0, 1)]
    results = []

    def run() -> int:
        xc, xn = (
            iter(make_loader(s, 0, FEED_STEPS, workers, pin_memory=PIN, thread=thread))
            for s in samplers
        )
        next(xc), next(xn)
        time.sleep(STEP_S)
        tic, patches = time.perf_counter(), 0
        for a, b in zip(xc, xn, strict=True):
            patches += len(a["case"]) + len(b["case"])
            time.sleep(STEP_S)
        elapsed = time.perf_counter() - tic
        results.append((elapsed / (FEED_STEPS - 1), patches / elapsed))
        return patches

    n = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert n == (FEED_STEPS - 1) * 2 * data.batch_size
    s_per_step, rate = results[-1]
    benchmark.extra_info.update(
        ms_per_step=1e3 * s_per_step,
        patches_per_s=rate,
        step_ms=1e3 * STEP_S,
        feed=feed,
        pinned=PIN,
    )
