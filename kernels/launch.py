"""What the host computes for a kernel launch: the matrix table, block sizes, splits, precision.

The matrix table (the pattern of Triton's grouped-GEMM tutorial): the Gram and feature-gradient
kernels serve several matrices in one grid (the three inputs of the fused losses, or the B
samples of ``reduce=None``), program axis 2 picking the matrix. Each matrix m is described by one
int64 row of a small (M, len(TABLE_COLUMNS)) tensor on the features' device:

    x         address of F_m[0, 0, 0] (the features of matrix m; ``data_ptr``, offsets included)
    batch     NB_m, samples averaged into the matrix (1 per sample)
    n         N_m, flattened spatial size
    stride_b  stride of F_m over samples, in elements (int64: no overflow for any tensor)
    stride_c  stride over channels
    stride_n  stride over the flattened spatial axis (``UNIT_N`` launches assume 1)
    grad      address of dF_m[0, 0, 0], a contiguous (NB_m, C, N_m) gradient (0 in forward)

The kernels read a row with :func:`rdcl.kernels.jit_helpers.load_matrix` and cast the
addresses back to pointers (``.to(tl.pointer_type(DTYPE))``); all matrices of one launch share
the element dtype ``DTYPE`` and the channel count C. The table holds raw addresses, so the
tensors it describes must stay alive until the launch has run (the launchers hold them). On CUDA
the table is one small host-to-device copy per launch, from pinned memory without a host sync;
for the same reason a launch cannot be captured in a CUDA graph (refused with a clear error).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .runtime import INTERPRETING

TABLE_COLUMNS = ("x", "batch", "n", "stride_b", "stride_c", "stride_n", "grad")
"""Columns of one row of the matrix table (see the module docstring)."""

TABLE_WIDTH = tl.constexpr(len(TABLE_COLUMNS))
"""Row length of the matrix table (a constexpr: the kernels read it)."""

TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}
"""Triton element type of each supported feature / accumulation dtype."""


def tl_dtype(dtype: torch.dtype) -> tl.dtype:
    """The Triton element type of ``dtype`` (fp16, bf16, fp32, fp64).

    Raises:
        ValueError: any other dtype.
    """
    if dtype not in TL_DTYPES:
        raise ValueError(
            f"relation kernels take float16/bfloat16/float32/float64 features, found {dtype}"
        )
    return TL_DTYPES[dtype]


def as_bcn(features: torch.Tensor) -> torch.Tensor:
    """View (B, C, *spatial) as (B, C, N) without copying where the strides allow it."""
    if features.dim() < 2:
        raise ValueError(
            f"features must be (B, C, *spatial) with at least 2 dims, found shape "
            f"{tuple(features.shape)}"
        )
    return features.reshape(features.shape[0], features.shape[1], -1)


def _table_rows(
    x: torch.Tensor, grad: torch.Tensor | None, per_sample: bool
) -> list[tuple[int, ...]]:
    """Table rows of one (B, C, N) input: one batch-mean row, or one row per sample."""
    size = x.element_size()
    sb, sc, sn = x.stride()
    grad_ptr = 0 if grad is None else grad.data_ptr()
    if not per_sample:
        return [(x.data_ptr(), x.shape[0], x.shape[2], sb, sc, sn, grad_ptr)]
    grad_step = 0 if grad is None else grad.stride(0) * size
    return [
        (x.data_ptr() + b * sb * size, 1, x.shape[2], sb, sc, sn, grad_ptr + b * grad_step)
        for b in range(x.shape[0])
    ]


class MatrixTable(NamedTuple):
    """A launch's matrix table and the compile-time facts about it (see the module docstring)."""

    table: torch.Tensor
    """(M, len(TABLE_COLUMNS)) int64 on the features' device."""
    hints: dict[str, bool]
    """The ``UNIT_N``, ``ALIGNED``, ``N16`` constexprs of ``jit_helpers.load_matrix``."""


def _hints(rows: list[tuple[int, ...]]) -> dict[str, bool]:
    """What Triton would have specialised on, had the row values been scalar arguments: unit
    stride over N, 16-byte aligned addresses with stride_b and stride_c multiples of 16, and N a
    multiple of 16, each for every row (the loads are vectorised only with these facts)."""
    named = [dict(zip(TABLE_COLUMNS, row, strict=True)) for row in rows]
    return {
        "UNIT_N": all(r["stride_n"] == 1 or r["n"] == 1 for r in named),
        "ALIGNED": all(
            r["x"] % 16 == r["grad"] % 16 == r["stride_b"] % 16 == r["stride_c"] % 16 == 0
            for r in named
        ),
        "N16": all(r["n"] % 16 == 0 for r in named),
    }


def matrix_table(
    xs: tuple[torch.Tensor, ...],
    per_sample: bool,
    grads: tuple[torch.Tensor, ...] | None = None,
) -> MatrixTable:
    """The int64 matrix table (M, len(TABLE_COLUMNS)) of a Gram or feature-gradient launch.

    Args:
        xs: (B_t, C, N_t) inputs of one dtype on one device.
        per_sample: one matrix per sample of ``xs[0]`` (``reduce=None``, then ``xs`` has one
            input) instead of one batch-mean matrix per input.
        grads: contiguous (B_t, C, N_t) gradient buffers, one per input (backward only).

    Returns:
        The table on the inputs' device (copied from pinned memory without a host sync on CUDA)
        and its hints.

    Raises:
        RuntimeError: CUDA graph capture is running (a replay would re-read a host buffer that
            is reused after this call), or non-CPU tensors under ``TRITON_INTERPRET``.
    """
    device = xs[0].device
    if device.type != "cpu" and INTERPRETING:
        raise RuntimeError(
            "TRITON_INTERPRET=1 runs the relation kernels on CPU tensors only, found "
            f"{device} tensors (unset TRITON_INTERPRET to use the compiled kernels)"
        )
    pairs = zip(xs, grads if grads is not None else (None,) * len(xs), strict=True)
    rows = [row for x, g in pairs for row in _table_rows(x, g, per_sample)]
    hints = _hints(rows)
    table = torch.tensor(rows, dtype=torch.int64)
    if device.type == "cuda":
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                "the relation kernels copy a pointer table to the device at every call and "
                "cannot be captured in a CUDA graph; call them outside the captured region "
                "(train.cuda_graphs keeps the losses eager)"
            )
        return MatrixTable(table.pin_memory().to(device, non_blocking=True), hints)
    return MatrixTable(table.to(device), hints)


def dot_precision(dtype: torch.dtype, precision: str | None) -> str:
    """``tl.dot`` input precision: fp32 uses 3xtf32 on GPU (ieee in the interpreter)."""
    if precision is not None:
        if precision not in ("ieee", "tf32x3"):
            raise ValueError(f"precision must be 'ieee' or 'tf32x3', found {precision!r}")
        return precision
    return "ieee" if dtype == torch.float64 or INTERPRETING else "tf32x3"


def gram_block(c: int) -> int:
    """Gram / feature-gradient tile edge over channels: 16..64 (tl.dot needs >= 16)."""
    return min(max(triton.next_power_of_2(c), 16), 64)


def k_block(block_c: int, n_max: int) -> int:
    """Tile length over N for the Gram and feature-gradient kernels: 16..256, <= 8192 / block_c."""
    return max(16, min(256, 8192 // block_c, triton.next_power_of_2(n_max)))


def row_blocks(c: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_W) for full-width row tiles: BLOCK_W covers all C columns (512 for 320)."""
    width = max(triton.next_power_of_2(c), 16)
    return max(1, min(16, 4096 // width)), width


def choose_splits(c: int, n: int, programs: int, device: torch.device, block_k: int) -> int:
    """Number of split-K chunks so that about 4 programs per SM run (2 in the interpreter)."""
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 2
    return max(1, min(triton.cdiv(n, block_k), target // max(programs, 1)))


__all__ = [
    "TABLE_COLUMNS",
    "TABLE_WIDTH",
    "TL_DTYPES",
    "MatrixTable",
    "as_bcn",
    "choose_splits",
    "dot_precision",
    "gram_block",
    "k_block",
    "matrix_table",
    "row_blocks",
    "tl_dtype",
]
