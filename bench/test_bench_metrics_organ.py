"""Benchmark: rdcl's surface engine vs surface-distance on one organ-sized mask pair.

``test_bench_metrics.py`` times 12 small ellipsoid "lesions"; this times a single large object,
where both implementations spend their time differently (one big surface, few far queries): a
512x512x200 (x, y, z) volume holding an ellipsoid (gt, semi-axes 150 x 120 x 130 mm) and a copy
whose boundary is wavy (pred: radius modulated by +-4 % over the polar and azimuthal angles),
spacing (2.5, 0.8, 0.8) mm. One rdcl thread; NSD@3mm + HD95 + ASSD together, as in
``test_bench_metrics.py``; both implementations run in the same test, so the recorded ratio
(``extra_info["speedup_vs_surface_distance"]``) compares them under the same machine load, and
their results must agree to 1e-9.
Run: ``OMP_NUM_THREADS=1 pytest bench/test_bench_metrics_organ.py --benchmark-only -s``.
"""

from __future__ import annotations

import time

import numpy as np
from test_bench_metrics import SPACING, run_deepmind, run_rdcl

SHAPE = (200, 512, 512)  # (z, y, x)
SEMI_AXES_MM = (130.0, 120.0, 150.0)  # (z, y, x)


def make_organ_pair(shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) bool masks (z, y, x): gt an ellipsoid, pred the same with a wavy boundary."""
    centre = [(n - 1) / 2 for n in shape]
    radii = [a / s for a, s in zip(SEMI_AXES_MM, SPACING, strict=True)]  # voxels
    y = ((np.arange(shape[1], dtype=np.float32) - centre[1]) / radii[1])[:, None]
    x = ((np.arange(shape[2], dtype=np.float32) - centre[2]) / radii[2])[None, :]
    azimuth = np.arctan2(y, x)
    gt = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    for z in range(shape[0]):  # plane by plane: a few 1 MB temporaries instead of 200 MB ones
        zn = np.float32((z - centre[0]) / radii[0])
        r2 = zn * zn + y * y + x * x
        polar = np.arccos(np.clip(zn / np.sqrt(np.maximum(r2, 1e-12)), -1, 1))
        wave = 1 + 0.04 * np.sin(7 * azimuth) * np.sin(5 * polar)
        gt[z] = r2 <= 1
        pred[z] = r2 <= wave * wave
    return pred, gt


def test_bench_organ_pair(benchmark) -> None:
    pred, gt = make_organ_pair()
    ours = benchmark.pedantic(run_rdcl, args=(pred, gt, 1), rounds=3, iterations=1)
    reference_s = []
    for _ in range(2):
        start = time.perf_counter()
        reference = run_deepmind(pred, gt)
        reference_s.append(time.perf_counter() - start)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
    rdcl_s = benchmark.stats.stats.min
    ratio = min(reference_s) / rdcl_s
    benchmark.extra_info.update(
        pair="organ 512x512x200",
        surface_distance_s=reference_s,
        speedup_vs_surface_distance=ratio,
        nsd_3mm=ours[0],
        hd95_mm=ours[1],
        assd_mm=ours[2],
    )
    print(
        f"\norgan pair: rdcl 1 thread {rdcl_s:.3f} s (min of 3), surface-distance "
        f"{min(reference_s):.2f} s (min of 2, all {[round(t, 2) for t in reference_s]}): "
        f"{ratio:.1f}x; NSD@3mm {ours[0]:.4f}, HD95 {ours[1]:.2f} mm, ASSD {ours[2]:.3f} mm"
    )
