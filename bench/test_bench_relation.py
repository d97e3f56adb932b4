"""Benchmarks of the relation losses: Triton kernels vs eager reference vs torch.compile.

The measured work is the training step's: three batch-mean relation matrices (G(X_n), G(X_c),
T(X_c)) and both consistency distances, forward, backward, or both. GB/s counts the unavoidable
feature traffic (forward: read the three inputs; backward: read them again and write their
gradients) and is reported next to the device's copy bandwidth (a device-to-device copy of the
same bytes, measured in the same run). CUDA only: the interpreter is not a performance path.

Run: ``pytest bench/test_bench_relation.py --benchmark-only --benchmark-columns=min,median,mean``
"""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import relation_losses, relation_losses_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPES = {
    "bottleneck": (2, 320, 7, 5, 6),
    "stage1": (2, 64, 56, 80, 96),
    "highres": (2, 32, 56, 160, 192),
}
IMPLS = ("kernels", "eager", "compiled")
MODES = ("forward", "backward", "both")


def _loss_fn(impl: str):
    if impl == "kernels":
        return relation_losses
    if impl == "eager":
        return relation_losses_reference
    return torch.compile(relation_losses_reference)


def _copy_bandwidth(nbytes: int) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write of ``nbytes``)."""
    src = torch.empty(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    stop.record()
    torch.cuda.synchronize()
    return 2 * src.numel() * 4 * 20 / (start.elapsed_time(stop) * 1e-3) / 1e9


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_relation_losses(benchmark, shape: str, impl: str, mode: str) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    feats = [
        torch.randn(SHAPES[shape], device="cuda", generator=gen, requires_grad=True)
        for _ in range(3)
    ]
    fn = _loss_fn(impl)
    weights = torch.tensor([1.0, -1.0], device="cuda")

    def forward():
        d_g, d_t = fn(*feats)
        return weights[0] * d_g + weights[1] * d_t

    def backward(total):
        torch.autograd.grad(total, feats)

    def both():
        backward(forward())

    for _ in range(3):  # warm-up: Triton and Inductor compilation
        both()
    torch.cuda.synchronize()
    feature_bytes = sum(f.numel() * f.element_size() for f in feats)
    traffic = {"forward": feature_bytes, "backward": 2 * feature_bytes, "both": 3 * feature_bytes}
    if mode == "forward":
        with torch.no_grad():
            benchmark(lambda: (forward(), torch.cuda.synchronize()))
    elif mode == "backward":
        benchmark.pedantic(
            lambda total: (backward(total), torch.cuda.synchronize()),
            setup=lambda: ((forward(),), {}),
            rounds=50,
        )
    else:
        benchmark(lambda: (both(), torch.cuda.synchronize()))
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(),
        shape=SHAPES[shape],
        traffic_gb=traffic[mode] / 1e9,
        gb_per_s=traffic[mode] / seconds / 1e9,
        copy_gb_per_s=_copy_bandwidth(feature_bytes),
    )
