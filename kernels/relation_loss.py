"""Fused relation-consistency losses: three relation matrices and both distances in 4 launches.

Inputs X_0 = G(X_n), X_1 = G(X_c), X_2 = T(X_c), each (B_t, C, *spatial) (batch sizes and spatial
sizes may differ, C may not). With R_t the batch-mean relation matrix of X_t (see
``gram_forward.py``):

    d_g = ||R_0 - R_1||_F^2,    d_t = ||R_1.detach() - R_2||_F^2     (sums over the C x C entries,
                                                                    Eq. 4-5 of the paper)

(the ``"row"`` and ``"mean"`` reductions, sum / C and sum / C^2, are applied by the caller on
these sums, :func:`rdcl.kernels.reference.reduction_divisor`; the kernels' backward therefore
receives (gd_g, gd_t) already divided, through autograd.)
Forward: one split-K Gram launch for all three inputs (``gram_forward._relation_gram_kernel``,
one matrix table row per input), then one single-program launch that reduces the splits and
stores G and its row norms (pass 1), then normalises the rows with the per-matrix floor of
``reference.py`` and sums both distances in a fixed order (pass 2, deterministic).
Backward, for upstream gradients (gd_g, gd_t) and k = 2:

    dR_0 = k gd_g (R_0 - R_1),   dR_1 = -dR_0,   dR_2 = -k gd_t (R_1 - R_2)

(R_1 receives nothing from d_t: it is detached there), then one launch for the three dG and one
(``gram_backward._relation_features_grad_kernel``) for the three feature gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gram_backward import features_grad
from .gram_forward import gram_partials
from .jit_helpers import MAX, SUM, grad_gram_rows, i64, row_floor, row_norms, row_sum, sum_splits
from .launch import as_bcn, row_blocks, tl_dtype
from .reference import EPS, ROW_FLOOR


@triton.jit
def _relation_loss_fwd_kernel(part_ptr, r_ptr, norm_ptr, loss_ptr, C, SPLITS,
                              BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, ACC: tl.constexpr,
                              FLOOR: tl.constexpr, EPS: tl.constexpr):  # fmt: skip
    """One program: R_t and ||G_t|| for t = 0, 1, 2 row block by row block, then d_g and d_t."""
    cols = tl.arange(0, BLOCK_W)
    cc = i64(C) * C
    part_1 = part_ptr + i64(SPLITS) * cc
    part_2 = part_1 + i64(SPLITS) * cc
    max_0 = tl.full((BLOCK_R,), 0.0, ACC)
    max_1 = tl.full((BLOCK_R,), 0.0, ACC)
    max_2 = tl.full((BLOCK_R,), 0.0, ACC)
    # pass 1: G_t (stored into r) and the row norms, with the running largest row norm per matrix
    for r0 in range(0, C, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < C) & (cols[None, :] < C)
        offs = rows[:, None] * C + cols[None, :]
        g_0 = sum_splits(part_ptr, rows, cols, C, SPLITS, ACC)
        g_1 = sum_splits(part_1, rows, cols, C, SPLITS, ACC)
        g_2 = sum_splits(part_2, rows, cols, C, SPLITS, ACC)
        n_0, n_1, n_2 = row_norms(g_0), row_norms(g_1), row_norms(g_2)
        tl.store(r_ptr + offs, g_0, mask=mask)
        tl.store(r_ptr + cc + offs, g_1, mask=mask)
        tl.store(r_ptr + 2 * cc + offs, g_2, mask=mask)
        tl.store(norm_ptr + rows, n_0, mask=rows < C)
        tl.store(norm_ptr + C + rows, n_1, mask=rows < C)
        tl.store(norm_ptr + 2 * C + rows, n_2, mask=rows < C)
        max_0 = tl.maximum(max_0, n_0)
        max_1 = tl.maximum(max_1, n_1)
        max_2 = tl.maximum(max_2, n_2)
    f_0 = tl.maximum(FLOOR * tl.reduce(max_0, 0, MAX), EPS)
    f_1 = tl.maximum(FLOOR * tl.reduce(max_1, 0, MAX), EPS)
    f_2 = tl.maximum(FLOOR * tl.reduce(max_2, 0, MAX), EPS)
    tl.debug_barrier()
    # pass 2: normalise in place, accumulate both squared distances
    sum_g = tl.full((BLOCK_R, BLOCK_W), 0.0, ACC)
    sum_t = tl.full((BLOCK_R, BLOCK_W), 0.0, ACC)
    for r0 in range(0, C, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < C) & (cols[None, :] < C)
        offs = rows[:, None] * C + cols[None, :]
        rmask = rows < C
        d_0 = tl.maximum(tl.load(norm_ptr + rows, mask=rmask, other=1.0), f_0)
        d_1 = tl.maximum(tl.load(norm_ptr + C + rows, mask=rmask, other=1.0), f_1)
        d_2 = tl.maximum(tl.load(norm_ptr + 2 * C + rows, mask=rmask, other=1.0), f_2)
        r_0 = tl.load(r_ptr + offs, mask=mask, other=0.0) / d_0[:, None]
        r_1 = tl.load(r_ptr + cc + offs, mask=mask, other=0.0) / d_1[:, None]
        r_2 = tl.load(r_ptr + 2 * cc + offs, mask=mask, other=0.0) / d_2[:, None]
        tl.store(r_ptr + offs, r_0, mask=mask)
        tl.store(r_ptr + cc + offs, r_1, mask=mask)
        tl.store(r_ptr + 2 * cc + offs, r_2, mask=mask)
        sum_g += (r_0 - r_1) * (r_0 - r_1)
        sum_t += (r_1 - r_2) * (r_1 - r_2)
    tl.store(loss_ptr, tl.reduce(row_sum(sum_g), 0, SUM))
    tl.store(loss_ptr + 1, tl.reduce(row_sum(sum_t), 0, SUM))


@triton.jit
def _relation_loss_bwd_kernel(r_ptr, norm_ptr, grad_ptr, dg_ptr, C, BLOCK_R: tl.constexpr,
                              BLOCK_W: tl.constexpr, ACC: tl.constexpr, FLOOR: tl.constexpr,
                              EPS: tl.constexpr):  # fmt: skip
    """Grid (row blocks,): dG_t rows for the three relation matrices from (gd_g, gd_t)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    offs = rows[:, None] * C + cols[None, :]
    cc = i64(C) * C
    r_0 = tl.load(r_ptr + offs, mask=mask, other=0.0)
    r_1 = tl.load(r_ptr + cc + offs, mask=mask, other=0.0)
    r_2 = tl.load(r_ptr + 2 * cc + offs, mask=mask, other=0.0)
    dr_0 = (2.0 * tl.load(grad_ptr).to(ACC)) * (r_0 - r_1)
    dr_2 = (-2.0 * tl.load(grad_ptr + 1).to(ACC)) * (r_1 - r_2)
    rmask = rows < C
    n_0 = tl.load(norm_ptr + rows, mask=rmask, other=1.0)
    n_1 = tl.load(norm_ptr + C + rows, mask=rmask, other=1.0)
    n_2 = tl.load(norm_ptr + 2 * C + rows, mask=rmask, other=1.0)
    f_0 = row_floor(norm_ptr, C, BLOCK_W, ACC, FLOOR, EPS)
    f_1 = row_floor(norm_ptr + C, C, BLOCK_W, ACC, FLOOR, EPS)
    f_2 = row_floor(norm_ptr + 2 * C, C, BLOCK_W, ACC, FLOOR, EPS)
    tl.store(dg_ptr + offs, grad_gram_rows(r_0, dr_0, n_0, f_0), mask=mask)
    tl.store(dg_ptr + cc + offs, grad_gram_rows(r_1, -dr_0, n_1, f_1), mask=mask)
    tl.store(dg_ptr + 2 * cc + offs, grad_gram_rows(r_2, dr_2, n_2, f_2), mask=mask)


def _inputs(feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """(B, C, N) views of the three inputs in one dtype; same C required."""
    xs = tuple(as_bcn(x) for x in feats)
    if len({x.shape[1] for x in xs}) != 1:
        raise ValueError(
            f"all three feature maps need the same channel count, found "
            f"{', '.join(str(x.shape[1]) for x in xs)}"
        )
    dtype = torch.promote_types(torch.promote_types(xs[0].dtype, xs[1].dtype), xs[2].dtype)
    return tuple(x.to(dtype) for x in xs)


def relation_loss_forward(
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    *,
    splits: int | None = None,
    precision: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward of the two relation distances, sums over C x C (2 launches).

    Args:
        g_noncovid, g_covid, t_covid: (B_t, C, *spatial_t) features, same C (inputs of different
            dtypes are first cast to the widest).
        splits, precision: as in :func:`rdcl.kernels.gram_forward.relation_forward`.

    Returns:
        ``losses`` (2,) = (d_g, d_t) (squared Frobenius norms), ``r`` (3, C, C) and ``norms``
        (3, C) (saved for backward), in fp32 (fp64 when the inputs are fp64).
    """
    xs = _inputs((g_noncovid, g_covid, t_covid))
    c = xs[0].shape[1]
    part, splits = gram_partials(xs, False, splits, precision)
    acc = part.dtype
    r = torch.empty((3, c, c), device=part.device, dtype=acc)
    norms = torch.empty((3, c), device=part.device, dtype=acc)
    losses = torch.empty(2, device=part.device, dtype=acc)
    block_r, block_w = row_blocks(c)
    _relation_loss_fwd_kernel[(1,)](
        part, r, norms, losses, c, splits, BLOCK_R=block_r, BLOCK_W=block_w,
        ACC=tl_dtype(acc), FLOOR=ROW_FLOOR, EPS=EPS,
    )  # fmt: skip
    return losses, r, norms


def relation_loss_backward(
    grad_losses: torch.Tensor,
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    *,
    precision: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused backward (2 launches): gradients of gd_g * d_g + gd_t * d_t for the three inputs.

    Args:
        grad_losses: (2,) upstream gradients (gd_g, gd_t).
        g_noncovid, g_covid, t_covid: the forward inputs.
        r, norms: saved by :func:`relation_loss_forward`.

    Returns:
        Three gradients with the shapes and dtypes of the inputs (contiguous).
    """
    feats = (g_noncovid, g_covid, t_covid)
    xs = _inputs(feats)
    c = xs[0].shape[1]
    block_r, block_w = row_blocks(c)
    grad_g = torch.empty((3, c, c), device=r.device, dtype=r.dtype)
    _relation_loss_bwd_kernel[(triton.cdiv(c, block_r),)](
        r, norms, grad_losses.to(r.dtype).contiguous(), grad_g, c, BLOCK_R=block_r,
        BLOCK_W=block_w, ACC=tl_dtype(r.dtype), FLOOR=ROW_FLOOR, EPS=EPS,
    )  # fmt: skip
    grads = features_grad(grad_g, xs, False, precision)
    return tuple(g.reshape(f.shape).to(f.dtype) for g, f in zip(grads, feats, strict=True))
