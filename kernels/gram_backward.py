"""Backward of the relation matrix by Triton: dR -> dG -> dF.

For dR (the floor f is a constant, as in the reference):

    dG_i = (dR_i - R_i <R_i, dR_i>) / ||G_i||   (dR_i / f where ||G_i|| < f)
    dA = (dG + dG^T) A,    dF_b = dA / B  (per-sample: dF_b = dA_b)

Launches: ``_relation_gram_grad_kernel`` (dG, full-row tiles) and
``_relation_features_grad_kernel`` (dF of every matrix of a matrix table, shared with the fused
losses). A is re-read from the features with the batch mean fused into the load, as in the
forward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .jit_helpers import grad_gram_rows, i64, load_grad_ptr, load_matrix, load_mean_tile, row_floor
from .launch import (
    as_bcn,
    dot_precision,
    gram_block,
    k_block,
    matrix_table,
    row_blocks,
    tl_dtype,
)
from .reference import EPS, ROW_FLOOR, acc_dtype


@triton.jit
def _relation_gram_grad_kernel(r_ptr, dr_ptr, norm_ptr, dg_ptr, C, BLOCK_R: tl.constexpr,
                      BLOCK_W: tl.constexpr, ACC: tl.constexpr, FLOOR: tl.constexpr,
                      EPS: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): dG rows from dR rows (full-width row tiles)."""
    b = i64(tl.program_id(1))
    floor = row_floor(norm_ptr + b * C, C, BLOCK_W, ACC, FLOOR, EPS)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    offs = b * C * C + rows[:, None] * C + cols[None, :]
    r = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    dr = tl.load(dr_ptr + offs, mask=mask, other=0.0).to(ACC)
    norm = tl.load(norm_ptr + b * C + rows, mask=rows < C, other=1.0).to(ACC)
    tl.store(dg_ptr + offs, grad_gram_rows(r, dr, norm, floor), mask=mask)


@triton.jit
def _feature_grad_tile(x_ptr, dx_ptr, dg_ptr, NB, C, N, sb, sc, sn, pid_i, pid_n,
                       BLOCK_I: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                       PRECISION: tl.constexpr):  # fmt: skip
    """dF_b[rows, cols] = ((dG + dG^T) A)[rows, cols] / NB for each of the NB samples.

    ``dx_ptr`` is a contiguous (NB, C, N) gradient; ``x_ptr`` the (strided) features.
    """
    ri = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.full((BLOCK_I, BLOCK_N), 0.0, ACC)
    for j0 in range(0, C, BLOCK_I):
        rj = j0 + tl.arange(0, BLOCK_I)
        mask = (ri[:, None] < C) & (rj[None, :] < C)
        s = tl.load(dg_ptr + ri[:, None] * C + rj[None, :], mask=mask, other=0.0)
        s += tl.load(dg_ptr + rj[None, :] * C + ri[:, None], mask=mask, other=0.0)
        a = load_mean_tile(x_ptr, rj, cols, NB, C, N, sb, sc, sn, ACC)
        acc = tl.dot(s, a, acc, input_precision=PRECISION, out_dtype=ACC)
    acc = (acc / NB).to(dx_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
    mask = (ri[:, None] < C) & (cols[None, :] < N)
    out = dx_ptr + ri[:, None].to(tl.int64) * N + cols[None, :]
    for b in range(NB):
        tl.store(out + i64(b) * C * N, acc, mask=mask)


@triton.jit
def _relation_features_grad_kernel(table_ptr, dg_ptr, C, DTYPE: tl.constexpr, UNIT_N: tl.constexpr,
                          ALIGNED: tl.constexpr, N16: tl.constexpr, BLOCK_I: tl.constexpr,
                          BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                          PRECISION: tl.constexpr):  # fmt: skip
    """Grid (row blocks, N blocks, M): dF_m = (dG_m + dG_m^T) A_m / NB_m for the table matrices.

    ``table_ptr``: the (M, 7) int64 matrix table with the gradient column filled;
    ``dg_ptr``: (M, C, C) dL/dG in the accumulation dtype; DTYPE, UNIT_N, ALIGNED, N16: see
    ``jit_helpers.load_matrix``.
    """
    m = i64(tl.program_id(2))
    x, nb, n, sb, sc, sn = load_matrix(table_ptr, m, DTYPE, UNIT_N, ALIGNED, N16)
    dx = load_grad_ptr(table_ptr, m, DTYPE, ALIGNED)
    _feature_grad_tile(x, dx, dg_ptr + m * C * C, nb, C, n, sb, sc, sn, tl.program_id(0),
                       tl.program_id(1), BLOCK_I, BLOCK_N, ACC, PRECISION)  # fmt: skip


def features_grad(
    grad_g: torch.Tensor, xs: tuple[torch.Tensor, ...], per_sample: bool, precision: str | None
) -> tuple[torch.Tensor, ...]:
    """Launch dF = (dG + dG^T) A / NB for the matrices of ``gram_forward.gram_partials``.

    Args:
        grad_g: (M, C, C) dL/dG.
        xs: the (B_t, C, N_t) inputs of one dtype.
        per_sample: as in ``gram_partials``.
        precision: ``tl.dot`` input precision (:func:`rdcl.kernels.launch.dot_precision`).

    Returns:
        one contiguous (B_t, C, N_t) gradient per input, in the input dtype.
    """
    x0 = xs[0]
    c = x0.shape[1]
    acc = acc_dtype(x0.dtype)
    grads = tuple(torch.empty(x.shape, device=x.device, dtype=x.dtype) for x in xs)
    block_i = gram_block(c)
    n_max = max(x.shape[2] for x in xs)
    block_n = k_block(block_i, n_max)
    table, hints = matrix_table(xs, per_sample, grads)
    grid = (triton.cdiv(c, block_i), triton.cdiv(n_max, block_n), grad_g.shape[0])
    _relation_features_grad_kernel[grid](
        table, grad_g.to(acc).contiguous(), c, DTYPE=tl_dtype(x0.dtype), **hints,
        BLOCK_I=block_i, BLOCK_N=block_n, ACC=tl_dtype(acc),
        PRECISION=dot_precision(x0.dtype, precision),
    )  # fmt: skip
    return grads


def gram_grad(grad_r: torch.Tensor, r: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """dL/dG (same shape as ``r``: (C, C) or (B, C, C)) from dL/dR, R and the row norms."""
    c = r.shape[-1]
    r3, n2 = r.reshape(-1, c, c).contiguous(), norms.reshape(-1, c).contiguous()
    dr = grad_r.reshape(-1, c, c).to(r.dtype).contiguous()
    grad_g = torch.empty_like(r3)
    block_r, block_w = row_blocks(c)
    _relation_gram_grad_kernel[(triton.cdiv(c, block_r), r3.shape[0])](
        r3, dr, n2, grad_g, c, BLOCK_R=block_r, BLOCK_W=block_w, ACC=tl_dtype(r.dtype),
        FLOOR=ROW_FLOOR, EPS=EPS,
    )  # fmt: skip
    return grad_g.reshape(r.shape)


def gram_grad_to_features(
    grad_g: torch.Tensor,
    features: torch.Tensor,
    reduce: str | None = "mean",
    *,
    precision: str | None = None,
) -> torch.Tensor:
    """dL/dF from dL/dG (C, C) or (B, C, C): dA = (dG + dG^T) A; dF_b = dA / B or dA_b."""
    x = as_bcn(features)
    c = x.shape[1]
    (grad,) = features_grad(grad_g.reshape(-1, c, c), (x,), reduce is None, precision)
    return grad.reshape(features.shape)


def relation_backward(
    grad_r: torch.Tensor,
    features: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    reduce: str | None = "mean",
    *,
    precision: str | None = None,
) -> torch.Tensor:
    """Gradient of the relation matrix w.r.t. the features by Triton (2 launches).

    Args:
        grad_r: dL/dR, same shape as ``r``.
        features: the forward input (B, C, *spatial).
        r, norms: the outputs of ``gram_forward.relation_forward``.
        reduce: as in the forward.
        precision: as in ``gram_forward.relation_forward``.

    Returns:
        dL/dF with the shape and dtype of ``features`` (contiguous).
    """
    return gram_grad_to_features(gram_grad(grad_r, r, norms), features, reduce, precision=precision)
