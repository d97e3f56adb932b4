"""torch.profiler breakdown of one training step (the dual-encoder rdcl step of
``bench/test_bench_step.py``, paper3d, batch 2): where the time goes (convolutions, instance
norm, copies, element-wise work, kernel launches) and host synchronisations.

Usage: ``python bench/profile_step.py OUT_DIR [switch=value ...]`` (e.g. ``channels_last=true
autocast=bf16``; values parsed as YAML). Writes ``OUT_DIR/profile[-switches].txt`` (category
summary + the top ops by device time) and a Chrome trace ``.json``. On the CPU it profiles the
CPU patch of test_bench_step (``RDCL_BENCH_PATCH`` overrides); ``RDCL_PROFILE_STEPS`` sets the
number of profiled steps (default 5).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from test_bench_step import DEVICE, PATCH, _config, _Step, _sync
from torch.profiler import ProfilerActivity, profile

CATEGORIES = (
    ("convolution", ("conv", "cudnn", "xmma", "implicit_gemm", "winograd", "mkldnn")),
    ("instance norm", ("instance_norm", "batch_norm", "welford", "native_group_norm")),
    ("copies / layout", ("copy", "memcpy", "contiguous", "cat", "to_copy", "clone", "nchw")),
    ("relation + loss", ("rdcl::", "relation", "sigmoid", "binary_cross", "mse", "pow")),
    ("optimizer", ("sgd", "foreach", "_fused", "clip_grad", "norm")),
)
"""Op-name fragments (lower case) per reported category; the first match wins."""


def _category(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other (element-wise, activations, ...)"


def _device_time(evt) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total", "self_cpu_time_total"):
        if hasattr(evt, attr):
            return float(getattr(evt, attr))
    return 0.0


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("gpu_results")
    out.mkdir(parents=True, exist_ok=True)
    switches = {}
    for item in argv[1:]:
        key, raw = item.split("=", 1)
        switches[key] = yaml.safe_load(raw)
    tag = "-".join(f"{k}={v}" for k, v in switches.items())
    step = _Step(_config("rdcl", **switches))
    batch = step.batch(0)
    for _ in range(3 if DEVICE.type == "cuda" else 1):
        step(*batch)
    _sync()
    steps = int(os.environ.get("RDCL_PROFILE_STEPS", "5"))
    activities = [ProfilerActivity.CPU]
    if DEVICE.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.reset_peak_memory_stats()
    with profile(activities=activities, record_shapes=False) as prof:
        for _ in range(steps):
            step(*batch)
        _sync()
    events = prof.key_averages()
    per_cat: dict[str, float] = defaultdict(float)
    launches = syncs = 0
    for evt in events:
        name = evt.key
        if name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"):
            launches += evt.count
            continue
        if name in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync"):
            syncs += evt.count if "Synchronize" in name else 0
        if getattr(evt, "device_type", None) is not None and "CUDA" in str(evt.device_type):
            per_cat[_category(name)] += _device_time(evt)
        elif DEVICE.type != "cuda" and name.startswith("aten::"):
            per_cat[_category(name)] += float(evt.self_cpu_time_total)
    total = sum(per_cat.values()) or 1.0
    lines = [
        f"device {DEVICE} ({torch.cuda.get_device_name() if DEVICE.type == 'cuda' else 'cpu'}), "
        f"patch {PATCH}, batch 2, switches {switches or 'defaults'}, {steps} steps profiled",
        f"{'category':40s} {'ms/step':>9s} {'share':>7s}",
    ]
    for cat, us in sorted(per_cat.items(), key=lambda kv: -kv[1]):
        lines.append(f"{cat:40s} {us / 1000 / steps:9.2f} {100 * us / total:6.1f}%")
    lines.append(f"kernel launches per step: {launches / steps:.0f}")
    lines.append(f"explicit stream/device synchronisations per step: {syncs / steps:.1f}")
    if DEVICE.type == "cuda":
        lines.append(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    sort = "self_cuda_time_total" if DEVICE.type == "cuda" else "self_cpu_time_total"
    lines += ["", events.table(sort_by=sort, row_limit=40)]
    text = "\n".join(lines)
    name = f"profile{'-' + tag if tag else ''}"
    (out / f"{name}.txt").write_text(text + "\n")
    prof.export_chrome_trace(str(out / f"{name}.json"))
    print("\n".join(lines[: len(per_cat) + 6]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
