"""Benchmarks: rdcl's surface engine vs surface-distance and MONAI on CT-sized mask pairs.

Pairs: several ellipsoid "lesions" (gt) and perturbed copies with one lesion missed (pred), spacing
(2.5, 0.8, 0.8) mm. Each test times NSD@3mm + HD95 + ASSD together. Peak extra memory is measured
in a fresh subprocess (VmHWM growth after resetting it via /proc/self/clear_refs; Linux), so
C++ allocations count too.
Run: ``OMP_NUM_THREADS=2 pytest bench/test_bench_metrics.py --benchmark-only``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

SPACING = (2.5, 0.8, 0.8)
SHAPES = {"256x256x128": (128, 256, 256), "512x512x200": (200, 512, 512)}


def make_pair(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) bool masks of ``shape`` (z, y, x): 12 ellipsoids, pred perturbed, one missed."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = (np.arange(n, dtype=np.float32) for n in shape)
    gt = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    for i in range(12):
        c = np.array(shape) * rng.uniform([0.2, 0.25, 0.15], [0.8, 0.75, 0.85])
        r = np.array(shape) * rng.uniform([0.05, 0.04, 0.04], [0.15, 0.12, 0.12])
        for mask, cc, rr in (
            (gt, c, r),
            (pred, c + rng.normal(0, 2, 3), r * rng.uniform(0.85, 1.15, 3)),
        ):
            if mask is pred and i == 11:
                continue
            lo = np.maximum(0, np.floor(cc - rr).astype(int))
            hi = np.minimum(shape, np.ceil(cc + rr).astype(int) + 1)
            e = (
                ((zz[lo[0] : hi[0], None, None] - cc[0]) / rr[0]) ** 2
                + ((yy[None, lo[1] : hi[1], None] - cc[1]) / rr[1]) ** 2
                + ((xx[None, None, lo[2] : hi[2]] - cc[2]) / rr[2]) ** 2
            )
            mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= e <= 1
    return pred, gt


def run_rdcl(pred, gt, threads):
    from rdcl.metrics import surface_distances

    sd = surface_distances(pred, gt, SPACING, threads=threads)
    return sd.surface_dice(3.0), sd.hausdorff(95), sd.assd()


def run_deepmind(pred, gt):
    import surface_distance as sdm

    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # noqa: NPY201 (surface-distance spells np.Inf)
    r = sdm.compute_surface_distances(gt, pred, SPACING)
    d = sdm.compute_average_surface_distance(r)
    return (
        sdm.compute_surface_dice_at_tolerance(r, 3.0),
        sdm.compute_robust_hausdorff(r, 95),
        (d[0] * r["surfel_areas_gt"].sum() + d[1] * r["surfel_areas_pred"].sum())
        / (r["surfel_areas_gt"].sum() + r["surfel_areas_pred"].sum()),
    )


def run_monai(pred, gt):
    import torch
    from monai.metrics import compute_surface_dice

    p = torch.from_numpy(pred)[None, None].float()
    g = torch.from_numpy(gt)[None, None].float()
    p = torch.cat([1 - p, p], 1)
    g = torch.cat([1 - g, g], 1)
    return float(compute_surface_dice(p, g, [3.0], spacing=SPACING, use_subvoxels=True)[0, 0])


_MEM_SCRIPT = """
import json, sys
sys.path.insert(0, {bench!r})
import test_bench_metrics as b
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
pred, gt = b.make_pair(tuple({shape}))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
before = hwm()
{call}
print(json.dumps((hwm() - before) / 1024))
"""


def peak_extra_mb(shape, call: str) -> float:
    """Peak RSS growth (MB) of ``call`` on a fresh pair in a subprocess."""
    from pathlib import Path

    code = _MEM_SCRIPT.format(bench=str(Path(__file__).parent), shape=list(shape), call=call)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module", params=list(SHAPES))
def pair(request):
    return request.param, make_pair(SHAPES[request.param])


RUNNERS = {
    "rdcl_1thread": ("b.run_rdcl(pred, gt, 1)", lambda p, g: run_rdcl(p, g, 1)),
    "rdcl_2threads": ("b.run_rdcl(pred, gt, 2)", lambda p, g: run_rdcl(p, g, 2)),
    "surface_distance": ("b.run_deepmind(pred, gt)", run_deepmind),
    "monai_subvoxels": ("b.run_monai(pred, gt)", run_monai),
}


@pytest.mark.parametrize("impl", list(RUNNERS))
def test_bench_surface_metrics(benchmark, pair, impl):
    name, (pred, gt) = pair
    call, fn = RUNNERS[impl]
    rounds = 3 if impl.startswith("rdcl") else 1
    result = benchmark.pedantic(fn, args=(pred, gt), rounds=rounds, iterations=1)
    benchmark.extra_info["pair"] = name
    benchmark.extra_info["peak_extra_mb"] = peak_extra_mb(SHAPES[name], call)
    if impl == "surface_distance":
        ours = run_rdcl(pred, gt, 1)
        np.testing.assert_allclose(ours, result, rtol=0, atol=1e-9)
