"""Forward of the relation matrix by Triton: split-K channel Gram, then row normalisation.

For features F of shape (B, C, N) (spatial axes flattened):

    A = mean_b F_b                     (reduce="mean"; per-sample: A_b = F_b)
    G = A A^T                          (C, C), split-K over N, partials summed in a fixed order
    R_i = G_i / max(||G_i||, f)        (row i; f = max(ROW_FLOOR * max_j ||G_j||, EPS) per matrix)

Launches: ``_relation_gram_kernel`` (split-K partial Grams of every matrix of a matrix table,
shared with the fused losses), ``_relation_split_sum_kernel`` (G and its row norms, full-row
tiles) and ``_relation_normalize_kernel`` (the floor needs every row norm of the matrix first).
The batch mean is fused into every load of F (it is never materialised), accumulation is fp32
(fp64 for fp64 input), and fp32 products use ``ieee`` or the 3xtf32 scheme (``"tf32x3"``), never
plain tf32.
Offsets that scale with B, N or the split count are int64. Block sizes are chosen in Python
(``@triton.autotune`` does not run under ``TRITON_INTERPRET=1``). Every kernel's name starts
with ``_relation_``: a GPU profile shows only the kernel name (``bench/profile_step.py`` files
kernels by name).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .jit_helpers import i64, load_matrix, load_mean_tile, row_floor, row_norms, sum_splits
from .launch import (
    as_bcn,
    choose_splits,
    dot_precision,
    gram_block,
    k_block,
    matrix_table,
    row_blocks,
    tl_dtype,
)
from .reference import EPS, ROW_FLOOR, acc_dtype


@triton.jit
def _gram_partial(x_ptr, part_ptr, NB, C, N, sb, sc, sn, tile, split, SPLITS,
                  BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, SINGLE: tl.constexpr,
                  ACC: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """Partial Gram tile (rows block i, cols block j) over split ``split`` of N into part[split].

    SINGLE (C <= BLOCK_C): one tile holds every channel, so A is loaded once per K step.
    """
    nbc = (C + BLOCK_C - 1) // BLOCK_C
    ri = (tile // nbc) * BLOCK_C + tl.arange(0, BLOCK_C)
    rj = (tile % nbc) * BLOCK_C + tl.arange(0, BLOCK_C)
    chunk = ((N + SPLITS - 1) // SPLITS + BLOCK_K - 1) // BLOCK_K * BLOCK_K
    k0 = split * chunk
    k1 = tl.minimum(k0 + chunk, N)
    acc = tl.full((BLOCK_C, BLOCK_C), 0.0, ACC)
    for k in range(k0, k1, BLOCK_K):
        cols = k + tl.arange(0, BLOCK_K)
        ai = load_mean_tile(x_ptr, ri, cols, NB, C, k1, sb, sc, sn, ACC)
        if SINGLE:
            aj = ai
        else:
            aj = load_mean_tile(x_ptr, rj, cols, NB, C, k1, sb, sc, sn, ACC)
        acc = tl.dot(ai, tl.trans(aj), acc, input_precision=PRECISION, out_dtype=ACC)
    mask = (ri[:, None] < C) & (rj[None, :] < C)
    out = part_ptr + (split * C + ri[:, None]).to(tl.int64) * C + rj[None, :]
    tl.store(out, acc, mask=mask)


@triton.jit
def _relation_gram_kernel(table_ptr, part_ptr, C, SPLITS, DTYPE: tl.constexpr, UNIT_N: tl.constexpr,
                 ALIGNED: tl.constexpr, N16: tl.constexpr, BLOCK_C: tl.constexpr,
                 BLOCK_K: tl.constexpr, SINGLE: tl.constexpr, ACC: tl.constexpr,
                 PRECISION: tl.constexpr):  # fmt: skip
    """Grid (tiles, SPLITS, M): split-K partial Grams of the M table matrices into part.

    ``table_ptr``: the (M, 7) int64 matrix table (``launch.matrix_table``); ``part_ptr``: an
    (M, SPLITS, C, C) buffer in the accumulation dtype; DTYPE, UNIT_N, ALIGNED, N16: see
    ``jit_helpers.load_matrix``.
    """
    m = i64(tl.program_id(2))
    x, nb, n, sb, sc, sn = load_matrix(table_ptr, m, DTYPE, UNIT_N, ALIGNED, N16)
    _gram_partial(x, part_ptr + m * SPLITS * C * C, nb, C, n, sb, sc, sn, tl.program_id(0),
                  tl.program_id(1), SPLITS, BLOCK_C, BLOCK_K, SINGLE, ACC, PRECISION)  # fmt: skip


@triton.jit
def _relation_split_sum_kernel(part_ptr, r_ptr, norm_ptr, C, SPLITS, BLOCK_R: tl.constexpr,
                      BLOCK_W: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): reduce the splits of full rows; store G (into r) and ||G||."""
    b = i64(tl.program_id(1))
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    g = sum_splits(part_ptr + b * SPLITS * C * C, rows, cols, C, SPLITS, ACC)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    tl.store(r_ptr + b * C * C + rows[:, None] * C + cols[None, :], g, mask=mask)
    tl.store(norm_ptr + b * C + rows, row_norms(g), mask=rows < C)


@triton.jit
def _relation_normalize_kernel(r_ptr, norm_ptr, C, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
                      ACC: tl.constexpr, FLOOR: tl.constexpr, EPS: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): R = G / max(||G_i||, floor) in place (G stored in r)."""
    b = i64(tl.program_id(1))
    floor = row_floor(norm_ptr + b * C, C, BLOCK_W, ACC, FLOOR, EPS)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    offs = b * C * C + rows[:, None] * C + cols[None, :]
    g = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    norm = tl.load(norm_ptr + b * C + rows, mask=rows < C, other=1.0).to(ACC)
    tl.store(r_ptr + offs, g / tl.maximum(norm, floor)[:, None], mask=mask)


def gram_partials(
    xs: tuple[torch.Tensor, ...], per_sample: bool, splits: int | None, precision: str | None
) -> tuple[torch.Tensor, int]:
    """Launch the split-K Gram: per-sample matrices of xs[0], or batch means of 1-3 inputs.

    Args:
        xs: (B_t, C, N_t) views of one dtype (one input when ``per_sample``).
        per_sample: one matrix per sample of ``xs[0]`` instead of one batch mean per input.
        splits: split-K chunk count (default: :func:`rdcl.kernels.launch.choose_splits`).
        precision: ``tl.dot`` input precision (:func:`rdcl.kernels.launch.dot_precision`).

    Returns:
        partials (M, splits, C, C) in the accumulation dtype, and ``splits``.
    """
    x0 = xs[0]
    c = x0.shape[1]
    m = x0.shape[0] if per_sample else len(xs)
    acc = acc_dtype(x0.dtype)
    block_c = gram_block(c)
    n_max = max(x.shape[2] for x in xs)
    block_k = k_block(block_c, n_max)
    tiles = triton.cdiv(c, block_c) ** 2
    splits = splits or choose_splits(c, n_max, tiles * m, x0.device, block_k)
    part = torch.empty((m, splits, c, c), device=x0.device, dtype=acc)
    table, hints = matrix_table(xs, per_sample)
    _relation_gram_kernel[(tiles, splits, m)](
        table, part, c, splits, DTYPE=tl_dtype(x0.dtype), **hints, BLOCK_C=block_c,
        BLOCK_K=block_k, SINGLE=c <= block_c, ACC=tl_dtype(acc),
        PRECISION=dot_precision(x0.dtype, precision),
    )  # fmt: skip
    return part, splits


def relation_forward(
    features: torch.Tensor,
    reduce: str | None = "mean",
    *,
    splits: int | None = None,
    precision: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relation matrix by Triton (3 launches): returns (R, ||G|| row norms).

    Args:
        features: (B, C, *spatial), float16/bfloat16/float32/float64, any strides.
        reduce: ``"mean"`` -> R (C, C) of the batch mean; ``None`` -> (B, C, C) per sample.
        splits: split-K chunk count (default: fill the device); results do not depend on it
            beyond fp32 rounding, and are bitwise deterministic for a fixed value.
        precision: ``"ieee"`` or ``"tf32x3"`` for fp32 products (default: tf32x3 on GPU).

    Returns:
        R (C, C) or (B, C, C) and the unclamped row norms (C,) or (B, C), fp32 (fp64 for fp64).
    """
    x = as_bcn(features)
    c = x.shape[1]
    part, splits = gram_partials((x,), reduce is None, splits, precision)
    m = part.shape[0]
    r = torch.empty((m, c, c), device=x.device, dtype=part.dtype)
    norms = torch.empty((m, c), device=x.device, dtype=part.dtype)
    block_r, block_w = row_blocks(c)
    grid = (triton.cdiv(c, block_r), m)
    acc = tl_dtype(part.dtype)
    _relation_split_sum_kernel[grid](
        part, r, norms, c, splits, BLOCK_R=block_r, BLOCK_W=block_w, ACC=acc
    )
    _relation_normalize_kernel[grid](
        r, norms, c, BLOCK_R=block_r, BLOCK_W=block_w, ACC=acc, FLOOR=ROW_FLOOR, EPS=EPS
    )  # fmt: skip
    return (r, norms) if reduce is None else (r[0], norms[0])
