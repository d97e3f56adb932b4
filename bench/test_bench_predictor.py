"""Benchmarks of whole-volume prediction: the eager Python predictor, the exported TorchScript
predictor run from Python, and MONAI's ``sliding_window_inference``, with the same network, tile
(patch), overlap (0.5), tile batch and Gaussian weighting, in the same run.

Volumes: the real chest CT (``../shared/data/chest_ct/chest_ct.nii.gz``, 141x512x512; skipped
where absent or where SimpleITK is missing) and a 300x512x512 volume (``RDCL_BENCH_LARGE=1``; on
by default on a GPU). The network's training spacing is the input's, so no resampling runs: the
work is normalisation, the sliding window, sigmoid and threshold, the same in all three. MONAI
gets the tensor already on the device's side of the same pipeline (normalise, window, sigmoid,
threshold, back to the CPU).

Knobs (environment): ``RDCL_BENCH_DEVICE`` (cpu | cuda, default cuda when available),
``RDCL_BENCH_PRESET`` (default ``tiny3d`` on the CPU, ``paper3d`` on a GPU; single-encoder
network), ``RDCL_BENCH_PATCH`` (z,y,x; default 32,128,128 for tiny3d, the preset's otherwise),
``RDCL_BENCH_FEATURES`` (channels per stage, e.g. 2,2,4,4, to make the network cheaper on a
shared CPU), ``RDCL_BENCH_TILE_BATCH`` (default 4 on the CPU, 8 on a GPU),
``RDCL_BENCH_ROUNDS`` (default 1 on the CPU, 3 on a GPU). Every benchmark records ``tiles``,
``tiles_per_s``, the seconds and, on a GPU, ``peak_gib`` (``torch.cuda.max_memory_allocated``)
in ``extra_info``; the TorchScript and MONAI masks are compared with the eager one
(``dice_vs_eager``).

Run: ``OMP_NUM_THREADS=2 pytest bench/test_bench_predictor.py --benchmark-only
--benchmark-columns=min,median --benchmark-sort=name``
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcl.config import preset
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.inference import Predictor, compute_steps
from rdcl.model import build_network

ROOT = Path(__file__).resolve().parents[1]
CHEST_CT = ROOT.parent / "shared" / "data" / "chest_ct" / "chest_ct.nii.gz"
DEVICE = os.environ.get("RDCL_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
GPU = DEVICE.startswith("cuda")
PRESET = os.environ.get("RDCL_BENCH_PRESET", "paper3d" if GPU else "tiny3d")
TILE_BATCH = int(os.environ.get("RDCL_BENCH_TILE_BATCH", "8" if GPU else "4"))
ROUNDS = int(os.environ.get("RDCL_BENCH_ROUNDS", "3" if GPU else "1"))
LARGE = os.environ.get("RDCL_BENCH_LARGE", "1" if GPU else "0") == "1"
STATS = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)
IMPLS = ("eager", "torchscript", "monai")
VOLUMES = ("chest_ct", "300x512x512")

_cache: dict = {}


def _patch() -> tuple[int, ...]:
    env = os.environ.get("RDCL_BENCH_PATCH")
    if env:
        return tuple(int(v) for v in env.split(","))
    return (32, 128, 128) if PRESET == "tiny3d" else tuple(preset(PRESET).data.patch_size)


def _eager() -> Predictor:
    if "eager" not in _cache:
        cfg = preset(PRESET)
        data = dataclasses.replace(cfg.data, patch_size=_patch(), target_spacing=None)
        cfg = cfg.replace(data=data)
        if os.environ.get("RDCL_BENCH_FEATURES"):
            feats = tuple(int(v) for v in os.environ["RDCL_BENCH_FEATURES"].split(","))
            cfg = cfg.replace(model=dataclasses.replace(cfg.model, features=feats))
        torch.manual_seed(0)
        net = build_network(cfg.model, kind="single")
        _cache["eager"] = Predictor(
            net, config=cfg, intensity=STATS, device=DEVICE, tile_batch=TILE_BATCH
        )
    return _cache["eager"]


def _volume(name: str) -> tuple[np.ndarray, Geometry]:
    if name in _cache:
        return _cache[name]
    if name == "chest_ct":
        if not CHEST_CT.is_file():
            pytest.skip(f"real data not available: {CHEST_CT}")
        pytest.importorskip("SimpleITK", reason="reading the chest CT needs SimpleITK")
        from rdcl.data.io import read_image

        _cache[name] = read_image(CHEST_CT)
    else:
        if not LARGE:
            pytest.skip("300x512x512 runs with RDCL_BENCH_LARGE=1 (default on a GPU only)")
        rng = np.random.default_rng(0)
        image = rng.integers(-1000, 400, size=(300, 512, 512), dtype=np.int16)
        _cache[name] = (image, Geometry.default(3, (1.0, 0.8, 0.8)))
    return _cache[name]


def _torchscript(tmp_dir: Path):
    if "ts" not in _cache:
        from rdcl.export.torchscript import build_scripted

        path = tmp_dir / "bench.ts"
        torch.jit.save(build_scripted(_eager()), str(path))
        _cache["ts"] = torch.jit.load(str(path), map_location=DEVICE)
    return _cache["ts"]


def _monai_fn():
    monai = pytest.importorskip("monai.inferers", reason="MONAI is not installed")
    pred = _eager()
    net = pred.network
    patch = tuple(pred.config.data.patch_size)

    def run(image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(DEVICE)
        x = (x.clamp(STATS.lo, STATS.hi) - STATS.mean) / STATS.std
        with torch.no_grad():
            logits = monai.sliding_window_inference(
                x[None, None],
                roi_size=patch,
                sw_batch_size=TILE_BATCH,
                predictor=lambda t: net(t)[0],
                overlap=0.5,
                mode="gaussian",
                sigma_scale=0.125,
            )
        return (torch.sigmoid(logits[0, 0]) > 0.5).to(torch.uint8).cpu().numpy()

    return run


def _runner(impl: str, tmp_dir: Path):
    pred = _eager()
    if impl == "eager":
        return lambda image, geom: pred.predict_array(image, geom)
    if impl == "torchscript":
        module = _torchscript(tmp_dir)

        def run_ts(image: np.ndarray, geom: Geometry) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
            return module(x, torch.tensor(geom.spacing, dtype=torch.float64)).numpy()

        return run_ts
    monai_run = _monai_fn()
    return lambda image, geom: monai_run(image)


def _tiles(shape: tuple[int, ...]) -> int:
    patch = _eager().config.data.patch_size
    padded = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    return len(list(itertools.product(*compute_steps(padded, patch, 0.5))))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a > 0, b > 0).sum()) / total


@pytest.mark.parametrize("volume", VOLUMES)
@pytest.mark.parametrize("impl", IMPLS)
def test_predict_volume(benchmark, impl, volume, tmp_path_factory):
    image, geom = _volume(volume)
    run = _runner(impl, tmp_path_factory.mktemp("ts"))
    patch = tuple(_eager().config.data.patch_size)
    warm = np.full(patch, -500, dtype=np.int16)  # compile/profile passes outside the timing
    run(warm, Geometry.default(3, geom.spacing))
    if GPU:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds: list[float] = []
    masks: list[np.ndarray] = []

    def once() -> None:
        t0 = time.perf_counter()
        masks.append(run(image, geom))
        seconds.append(time.perf_counter() - t0)

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    mask = masks[-1]
    assert mask.shape == image.shape
    tiles = _tiles(image.shape)
    info = benchmark.extra_info
    info.update(
        device=DEVICE,
        preset=PRESET,
        patch=list(patch),
        tile_batch=TILE_BATCH,
        features=list(_eager().config.model.features),
        tiles=tiles,
        seconds_min=min(seconds),
        tiles_per_s=tiles / min(seconds),
    )
    if GPU:
        info["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    key = ("mask", volume)
    if impl == "eager":
        _cache[key] = mask
    elif key in _cache:
        info["dice_vs_eager"] = _dice(mask, _cache[key])
        if impl == "torchscript":  # the exported predictor must reproduce the eager mask
            np.testing.assert_array_equal(mask, _cache[key])
