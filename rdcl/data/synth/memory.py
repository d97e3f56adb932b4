"""How much memory synthesising one phantom needs, and a refusal when the machine lacks it.

Drawing a phantom holds a few dozen float32/float64 fields of the full grid at once (anatomy,
lesion, blur, noise). Measured with ``tracemalloc`` (numpy and scipy allocations) the peak is
111 bytes per voxel for 3D grids from 32x96x96 to 64x192x192 and 114-132 bytes per voxel for 2D
slices (256x256, 512x512), for every lesion kind; :data:`BYTES_PER_VOXEL` adds a margin.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path

from rdcl.errors import RdclInputError

BYTES_PER_VOXEL = 160
"""Planning figure for the peak memory of one phantom, bytes per voxel (measured <= 132)."""


class SynthMemoryError(RdclInputError):
    """The requested phantom shape needs more memory than this machine can give."""


def estimate_bytes(shape: tuple[int, ...]) -> int:
    """Peak bytes to synthesise one phantom of ``shape`` ((z, y, x) or (y, x) voxels)."""
    return BYTES_PER_VOXEL * math.prod(int(n) for n in shape)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Memory this process may still use: the least of the kernel's MemAvailable, the cgroup
    (v2 or v1) limit minus its usage, and the address-space rlimit; None when none is known."""
    limits: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 1 << 60:
            limits.append(max(0, limit - (usage or 0)))
            break
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(int(soft))
    return min(limits) if limits else None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    raise AssertionError  # pragma: no cover


def check_memory(shape: tuple[int, ...], available: int | None = None) -> None:
    """Raise :class:`SynthMemoryError` (one line naming the need) when a phantom of ``shape``
    needs more than ``available`` bytes (default :func:`available_bytes`; unknown: no check)."""
    need = estimate_bytes(shape)
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        voxels = math.prod(int(n) for n in shape)
        raise SynthMemoryError(
            f"shape {'x'.join(str(int(n)) for n in shape)} ({voxels:,} voxels) needs about "
            f"{_size(need)} of memory to synthesise ({BYTES_PER_VOXEL} bytes per voxel), "
            f"found {_size(have)} available; choose a smaller shape"
        )
