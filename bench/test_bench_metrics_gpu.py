"""GPU benchmarks of the surface-metric engine (issue 3 targets): the CUDA engine on a 512x512x200
pair already on the device, against one exact EDT of the same volume with cupy (the reference), and
checked against the CPU engine to 1e-9. Skips without CUDA or without the CUDA build.

Run: ``pytest bench/test_bench_metrics_gpu.py --benchmark-only`` (see ``bench/gpu_check.sh``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_bench_metrics import SHAPES, SPACING, make_pair

from rdcl.metrics import CUDA_BUILT, surface_distances

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and CUDA_BUILT), reason="needs a CUDA device and the CUDA build"
)


@pytest.fixture(scope="module", params=list(SHAPES))
def device_pair(request):
    pred, gt = make_pair(SHAPES[request.param])
    return request.param, (pred, gt), (torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda())


def _all_metrics(pred, gt):
    sd = surface_distances(pred, gt, SPACING)
    return sd.surface_dice(3.0), sd.hausdorff(95), sd.assd()


def test_bench_cuda_engine(benchmark, device_pair):
    name, (pred, gt), (pred_d, gt_d) = device_pair

    def run():
        out = _all_metrics(pred_d, gt_d)
        torch.cuda.synchronize()
        return out

    run()  # warm-up: context, allocator, module load
    result = benchmark.pedantic(run, rounds=20, iterations=1)
    benchmark.extra_info.update(pair=name, device=torch.cuda.get_device_name())
    np.testing.assert_allclose(result, _all_metrics(pred, gt), rtol=0, atol=1e-9)


def test_bench_cupy_edt_reference(benchmark, device_pair):
    cupy = pytest.importorskip("cupy")
    ndimage = pytest.importorskip("cupyx.scipy.ndimage")
    name, (_, gt), _ = device_pair
    g = cupy.asarray(gt)

    def run():
        out = ndimage.distance_transform_edt(~g, sampling=SPACING)
        cupy.cuda.Device().synchronize()
        return out

    run()
    benchmark.pedantic(run, rounds=20, iterations=1)
    benchmark.extra_info.update(pair=name, device=torch.cuda.get_device_name())
