"""Loader throughput for the ``paper3d`` patch (56x160x192, batch 2, nnU-Net augmentation) on the
CPU: patches per second from the memory-mapped cache, drawn in the main process or by 2 worker
processes, against the same draws from arrays held in RAM; and the separable spatial engine (the
default) against the scipy ``map_coordinates`` reference on the same draws (every test draws the
same steps, so rows of one run compare like with like).

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

from rdcl.config import preset
from rdcl.data import PatchSampler, make_loader
from rdcl.data.preprocess import CachedDataset

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
    sampler = PatchSampler(dataset, preset("paper3d").data, seed=0, spatial_engine=engine)
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


STEADY_STEPS = 40
"""Batches of the steady-state row (80 patches): enough that the workers' start-up, which the
16-patch rows above pay every round, is left out of the rate."""


@pytest.mark.benchmark(group="loader-paper3d-steady")
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_mmap_steady_state(benchmark, cache, workers):
    """Patches per second once the loader runs: the time from the first batch to the last
    (worker start-up and the first batch excluded), the rate the training step sees."""
    sampler = PatchSampler(cache, preset("paper3d").data, seed=0)
    rates = []

    def draw() -> int:
        loader = make_loader(sampler, 0, STEADY_STEPS, workers, pin_memory=False)
        it = iter(loader)
        n = next(it)["image"].shape[0]
        tic, after_first = time.perf_counter(), 0
        for b in it:
            after_first += b["image"].shape[0]
        rates.append(after_first / (time.perf_counter() - tic))
        return n + after_first

    n = benchmark.pedantic(draw, rounds=1, iterations=1, warmup_rounds=0)
    assert n == STEADY_STEPS * sampler.batch_size
    benchmark.extra_info.update(steady_patches_per_s=rates[-1], workers=workers)
