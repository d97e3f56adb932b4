"""The ``@triton.jit`` device functions shared by the relation kernels.

- reading a row of the matrix table (:mod:`rdcl.kernels.launch`): :func:`load_matrix`,
  :func:`load_grad_ptr`;
- tiles: :func:`load_mean_tile` (batch mean fused into the load), :func:`sum_splits` (split-K
  partials summed in a fixed order);
- rows: :func:`row_sum`, :func:`row_norms`, :func:`row_floor` (the per-matrix floor of
  :mod:`rdcl.kernels.reference`), :func:`grad_gram_rows` (dG rows from dR rows);
- :func:`i64` and the reduction combiners ``SUM`` / ``MAX``.

The kernels call Triton builtins and these helpers. The combiners follow the process's Triton
mode (:data:`rdcl.kernels.runtime.INTERPRETING`, fixed at import): the interpreter recognises its
own combiners and reduces with numpy; the compiler gets ours.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .launch import TABLE_WIDTH
from .runtime import INTERPRETING


@triton.jit
def _add(x, y):
    return x + y


@triton.jit
def _max2(x, y):
    return tl.maximum(x, y)


SUM = tl.standard._sum_combine if INTERPRETING else _add
MAX = tl.standard._elementwise_max if INTERPRETING else _max2


@triton.jit
def i64(x):
    """``x`` as an int64 scalar (loop counters and program ids are int32)."""
    return tl.cast(x, tl.int64)


@triton.jit
def load_matrix(table_ptr, m, DTYPE: tl.constexpr, UNIT_N: tl.constexpr, ALIGNED: tl.constexpr,
                N16: tl.constexpr):  # fmt: skip
    """Row ``m`` of the matrix table: (F_m pointer, NB_m, N_m, stride_b, stride_c, stride_n).

    Columns as in ``launch.TABLE_COLUMNS``. The flags restore what Triton's argument
    specialisation would tell the compiler about scalar arguments (values read from memory carry
    no such facts), so that loads along N are vectorised: ``UNIT_N``, stride_n is the literal 1;
    ``ALIGNED``, the address is 16-byte aligned and stride_b, stride_c are multiples of 16;
    ``N16``, N_m is a multiple of 16 (``launch.table_hints`` decides all three).
    """
    row = table_ptr + i64(m) * TABLE_WIDTH
    x = tl.load(row).to(tl.pointer_type(DTYPE))
    nb, n, sb, sc = tl.load(row + 1), tl.load(row + 2), tl.load(row + 3), tl.load(row + 4)
    if UNIT_N:
        sn = 1
    else:
        sn = tl.load(row + 5)
    if ALIGNED:
        x, sb, sc = tl.multiple_of(x, 16), tl.multiple_of(sb, 16), tl.multiple_of(sc, 16)
    if N16:
        n = tl.multiple_of(n, 16)
    return x, nb, n, sb, sc, sn


@triton.jit
def load_grad_ptr(table_ptr, m, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """The gradient pointer (column ``grad``) of row ``m`` of the matrix table (16-byte aligned
    when ``ALIGNED``, as in :func:`load_matrix`)."""
    dx = tl.load(table_ptr + i64(m) * TABLE_WIDTH + 6).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        dx = tl.multiple_of(dx, 16)
    return dx


@triton.jit
def row_sum(x):
    """Sum over axis 1 of a 2D tile."""
    return tl.reduce(x, 1, SUM)


@triton.jit
def row_norms(g):
    """L2 norms of the rows of a 2D tile."""
    return tl.sqrt(row_sum(g * g))


@triton.jit
def load_mean_tile(x_ptr, rows, cols, NB, C, N, sb, sc, sn, ACC: tl.constexpr):
    """Load F[:, rows, cols] and average over the NB samples: a (len(rows), len(cols)) tile."""
    mask = (rows[:, None] < C) & (cols[None, :] < N)
    ptrs = x_ptr + rows[:, None].to(tl.int64) * sc + cols[None, :].to(tl.int64) * sn
    a = tl.load(ptrs, mask=mask, other=0.0).to(ACC)
    for b in range(1, NB):
        a += tl.load(ptrs + i64(b) * sb, mask=mask, other=0.0).to(ACC)
    return a / NB


@triton.jit
def sum_splits(part_ptr, rows, cols, C, SPLITS, ACC: tl.constexpr):
    """G[rows, cols] = sum_s part[s, rows, cols], summed in split order (deterministic)."""
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    ptrs = part_ptr + rows[:, None].to(tl.int64) * C + cols[None, :]
    g = tl.load(ptrs, mask=mask, other=0.0).to(ACC)
    for s in range(1, SPLITS):
        g += tl.load(ptrs + i64(s) * C * C, mask=mask, other=0.0)
    return g


@triton.jit
def row_floor(norm_ptr, C, BLOCK_W: tl.constexpr, ACC: tl.constexpr, FLOOR: tl.constexpr,
              EPS: tl.constexpr):  # fmt: skip
    """max(FLOOR * max_j n_j, EPS) over the C row norms at ``norm_ptr`` (a scalar)."""
    cols = tl.arange(0, BLOCK_W)
    norms = tl.load(norm_ptr + cols, mask=cols < C, other=0.0).to(ACC)
    return tl.maximum(FLOOR * tl.reduce(norms, 0, MAX), EPS)


@triton.jit
def grad_gram_rows(r, dr, norm, floor):
    """dG rows from dR rows: (dR - R <R, dR>) / ||G|| (dR / floor where ||G|| < floor)."""
    proj = tl.where(norm >= floor, row_sum(r * dr), 0.0)
    return (dr - r * proj[:, None]) / tl.maximum(norm, floor)[:, None]
