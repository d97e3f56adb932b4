"""Benchmark: rdcl's surface engine vs surface-distance and MONAI on five kinds of mask pairs.

Each pair is 512x512x200 (x, y, z), spacing (2.5, 0.8, 0.8) mm (issue 20):

- ``organ4`` / ``organ12``: an organ-sized ellipsoid (gt, semi-axes 130 x 120 x 150 mm) and a copy
  whose radius is modulated by 1 + a sin(7 azimuth) sin(5 polar), a = 4 % / 12 %;
- ``lesions``: the 12-lesion pair of ``test_bench_metrics.py`` (one lesion missed);
- ``poor``: a poor prediction, the organ shifted by 20 mm along x plus three spurious 8 mm blobs
  50-100 mm from the organ;
- ``small``: a prediction of a quarter of the organ's volume, inside it (semi-axes x 0.63).

One test per pair times, in the same run (so under the same machine load): rdcl on 1 and on 2
threads (min of 3 rounds each), surface-distance (1 round) and MONAI's
``compute_surface_dice(use_subvoxels=True)`` (1 round; MONAI's only metric with
surface-distance's definition: its HD and ASSD use boundary voxels, so NSD alone is timed).
rdcl and surface-distance compute NSD@3mm + HD95 + ASSD together and must agree to 1e-9
(asserted); the ratios go to ``extra_info`` and are printed. Peak extra memory of rdcl (1 thread)
is measured in a fresh subprocess, as in ``test_bench_metrics.py``.
Run: ``OMP_NUM_THREADS=1 python -m pytest bench/test_bench_metrics_pairs.py --benchmark-only -s``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_bench_metrics import SPACING, make_pair, run_deepmind, run_monai, run_rdcl

SHAPE = (200, 512, 512)  # (z, y, x)
SEMI_AXES_MM = (130.0, 120.0, 150.0)  # (z, y, x)
CENTRE_MM = tuple((n - 1) / 2 * s for n, s in zip(SHAPE, SPACING, strict=True))
BLOBS_MM = ((450.0, 204.4, 204.4), (30.0, 204.4, 204.4), (250.0, 395.0, 204.4))  # poor: centres
BLOB_RADIUS_MM = 8.0


def ellipsoid(semi_mm, centre_mm, wave: float = 0.0) -> np.ndarray:
    """Bool mask of SHAPE: an ellipsoid (mm), radius modulated by 1 + wave sin(7 az) sin(5 pol)."""
    radii = [a / s for a, s in zip(semi_mm, SPACING, strict=True)]  # voxels
    c = [m / s for m, s in zip(centre_mm, SPACING, strict=True)]
    y = ((np.arange(SHAPE[1], dtype=np.float32) - c[1]) / radii[1])[:, None]
    x = ((np.arange(SHAPE[2], dtype=np.float32) - c[2]) / radii[2])[None, :]
    azimuth = np.arctan2(y, x)
    mask = np.zeros(SHAPE, bool)
    for z in range(SHAPE[0]):  # plane by plane: a few 1 MB temporaries
        zn = np.float32((z - c[0]) / radii[0])
        r2 = zn * zn + y * y + x * x
        if wave:
            polar = np.arccos(np.clip(zn / np.sqrt(np.maximum(r2, 1e-12)), -1, 1))
            w = 1 + wave * np.sin(7 * azimuth) * np.sin(5 * polar)
            mask[z] = r2 <= w * w
        else:
            mask[z] = r2 <= 1
    return mask


def make_kind(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) of one pair kind (see the module docstring)."""
    gt = ellipsoid(SEMI_AXES_MM, CENTRE_MM) if kind != "lesions" else None
    if kind in ("organ4", "organ12"):
        return ellipsoid(SEMI_AXES_MM, CENTRE_MM, 0.04 if kind == "organ4" else 0.12), gt
    if kind == "lesions":
        return make_pair(SHAPE)
    if kind == "poor":
        pred = ellipsoid(SEMI_AXES_MM, (CENTRE_MM[0], CENTRE_MM[1], CENTRE_MM[2] + 20.0))
        for centre in BLOBS_MM:
            pred |= ellipsoid((BLOB_RADIUS_MM,) * 3, centre)
        return pred, gt
    if kind == "small":
        return ellipsoid(tuple(a * 0.25 ** (1 / 3) for a in SEMI_AXES_MM), CENTRE_MM), gt
    raise ValueError(f"unknown pair kind {kind!r}")


KINDS = ("organ4", "organ12", "lesions", "poor", "small")

_MEM_SCRIPT = """
import json, sys
sys.path.insert(0, {bench!r})
import test_bench_metrics_pairs as b
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
pred, gt = b.make_kind({kind!r})
b.run_rdcl(pred, gt, 1)  # imports and first-touch outside the measurement
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
before = hwm()
b.run_rdcl(pred, gt, 1)
print(json.dumps((hwm() - before) / 1024))
"""


def peak_extra_mb(kind: str) -> float:
    """Peak RSS growth (MB) of one rdcl 1-thread evaluation of a fresh pair in a subprocess."""
    code = _MEM_SCRIPT.format(bench=str(Path(__file__).parent), kind=kind)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _min_time(fn, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


@pytest.mark.parametrize("kind", KINDS)
def test_bench_pair_kind(benchmark, kind: str) -> None:
    pred, gt = make_kind(kind)
    ours = benchmark.pedantic(run_rdcl, args=(pred, gt, 1), rounds=3, iterations=1)
    rdcl_s = benchmark.stats.stats.min
    two_s, _ = _min_time(lambda: run_rdcl(pred, gt, 2), 3)
    sd_s, reference = _min_time(lambda: run_deepmind(pred, gt), 1)
    monai_s, _ = _min_time(lambda: run_monai(pred, gt), 1)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
    info = {
        "pair": kind,
        "rdcl_1thread_s": rdcl_s,
        "rdcl_2threads_s": two_s,
        "surface_distance_s": sd_s,
        "monai_nsd_s": monai_s,
        "vs_surface_distance": sd_s / rdcl_s,
        "vs_monai": monai_s / rdcl_s,
        "threads_2_vs_1": rdcl_s / two_s,
        "peak_extra_mb": peak_extra_mb(kind),
        "nsd_3mm": ours[0],
        "hd95_mm": ours[1],
        "assd_mm": ours[2],
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{kind}: rdcl 1 thread {rdcl_s:.3f} s, 2 threads {two_s:.3f} s "
        f"({info['threads_2_vs_1']:.2f}x); surface-distance {sd_s:.2f} s "
        f"({info['vs_surface_distance']:.1f}x); MONAI NSD {monai_s:.2f} s "
        f"({info['vs_monai']:.1f}x); {info['peak_extra_mb']:.0f} MB; "
        f"NSD@3mm {ours[0]:.4f}, HD95 {ours[1]:.2f} mm, ASSD {ours[2]:.3f} mm"
    )
