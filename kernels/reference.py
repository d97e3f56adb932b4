"""Pure-PyTorch reference of the relation matrix and the relation-consistency distances.

This is the slow path that every fast path (the Triton kernels) is tested against, and the CPU
implementation used where Triton is not available.

Row normalisation (the same in every path): with n_i = ||G_i|| the Gram row norms of one matrix,

    R_i = G_i / max(n_i, f),    f = max(ROW_FLOOR * max_j n_j, EPS)

The floor f is relative to the largest row of the same matrix and is a constant for the backward
(stop-gradient, like F.normalize's eps): rows at or above it get the usual projected gradient
(dR_i - R_i <R_i, dR_i>) / n_i, rows below it dR_i / f. The gradient of a channel shrinking to
zero is therefore bounded by ~1 / (ROW_FLOOR * max_j n_j) instead of growing as 1 / n_i.

Distances (Eq. 4-5 of the paper): the squared Frobenius norm, a SUM over the C x C entries. Every
row of R has norm <= 1, so each row contributes at most 4 and the sum at most 4C.
``reduction="row"`` divides it by C (the mean over rows of the per-row sums: at most 4, whatever
C), ``reduction="mean"`` by C^2 (the mean over entries). :func:`reduction_divisor` is the one
place that defines these divisors: the Triton kernels and the custom ops compute the sums, and
every path divides them by that number.
"""

from __future__ import annotations

import torch

EPS = 1e-12
"""Absolute row-norm floor: an all-zero Gram matrix normalises to zeros, never NaN."""

ROW_FLOOR = 1e-3
"""Relative row-norm floor: rows are divided by at least ROW_FLOOR times the largest row norm."""

REDUCTIONS = ("sum", "row", "mean")
"""Reductions of the squared relation difference: Eq. 4-5's sum over the C x C entries, that sum
/ C (per row) or / C^2 (per entry)."""


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation and output dtype for features of ``dtype``: fp64 for fp64, fp32 otherwise.

    The one rule every path follows (reference, Triton kernels, distributed mean, fake tensors).
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def row_floor(norms: torch.Tensor) -> torch.Tensor:
    """Per-matrix row-norm floor max(ROW_FLOOR * max_j n_j, EPS).

    Args:
        norms: (..., C) unclamped Gram row norms.

    Returns:
        (..., 1) floors (detached), broadcastable against ``norms``.
    """
    return (ROW_FLOOR * norms.detach().amax(dim=-1, keepdim=True)).clamp_min(EPS)


def normalize_rows(gram: torch.Tensor) -> torch.Tensor:
    """R = G / max(||G_i||, floor) row by row (see the module docstring); shape of ``gram``."""
    norms = torch.linalg.vector_norm(gram, dim=-1)
    floor = row_floor(norms)
    return gram / torch.where(norms >= floor, norms, floor)[..., None]


def check_reduction(reduction: str) -> None:
    """Raise ValueError unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, found {reduction!r}")


def reduction_divisor(c: int, reduction: str) -> int:
    """What a squared-Frobenius distance of C x C matrices is divided by under ``reduction``.

    Args:
        c: C, the channel count (relation matrices are C x C).
        reduction: ``"sum"`` (1), ``"row"`` (C) or ``"mean"`` (C^2).

    Returns:
        The divisor (an int, so the division is exact). Every path (reference, Triton kernels,
        distributed) computes the sum and divides it by this number, so each reduction's value
        and, through autograd, its gradient are the sum's divided by the same constant.

    Raises:
        ValueError: unknown ``reduction``.
    """
    check_reduction(reduction)
    return {"sum": 1, "row": c, "mean": c * c}[reduction]


def reduce_distance(total: torch.Tensor, c: int, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` to a squared-Frobenius distance ``total`` of C x C matrices
    (``total / reduction_divisor(c, reduction)``; the sum is returned as it is)."""
    divisor = reduction_divisor(c, reduction)
    return total if divisor == 1 else total / divisor


def _check(features: torch.Tensor) -> None:
    if features.dim() < 2:
        raise ValueError(
            f"features must be (B, C, *spatial) with at least 2 dims, found shape "
            f"{tuple(features.shape)}"
        )


def relation_matrix_reference(features: torch.Tensor, reduce: str | None = "mean") -> torch.Tensor:
    """Row-L2-normalised channel Gram matrix.

    Args:
        features: (B, C, *spatial) feature maps (any float dtype; computed in fp32 or fp64).
        reduce: ``"mean"`` averages the batch first: A = mean_b F_b flattened to (C, N),
            G = A A^T, R_i = G_i / max(||G_i||, floor) (module docstring), shape (C, C).
            ``None`` gives one matrix per sample, shape (B, C, C).

    Returns:
        R in fp32 (fp64 when the input is fp64); rows of zeros for all-zero channels.
    """
    _check(features)
    if reduce not in ("mean", None):
        raise ValueError(f"reduce must be 'mean' or None, found {reduce!r}")
    dtype = acc_dtype(features.dtype)
    a = features.reshape(features.shape[0], features.shape[1], -1).to(dtype)
    if reduce == "mean":
        a = a.mean(dim=0, keepdim=True)
    r = normalize_rows(a @ a.transpose(1, 2))
    return r[0] if reduce == "mean" else r


def relation_losses_reference(
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two relation-consistency distances of Algorithm 1 (unweighted, batch-mean relations).

    Args:
        g_noncovid: (B, C, *spatial) general-encoder features of the non-COVID batch X_n.
        g_covid: (B', C, *spatial) general-encoder features of the COVID batch X_c.
        t_covid: (B', C, *spatial) target-encoder features of the COVID batch X_c.

        reduction: ``"sum"`` (default): the squared Frobenius norm of Eq. 4-5, a sum over the
            C x C entries (at most 4C); ``"row"``: that sum / C (at most 4); ``"mean"``: that
            sum / C^2 (see :func:`reduction_divisor`).

    Returns:
        ``(d_g, d_t)`` scalars:
        d_g = ||R(g_noncovid) - R(g_covid)||_F^2, gradient into both G inputs;
        d_t = ||R(g_covid).detach() - R(t_covid)||_F^2, gradient into ``t_covid`` only.
        The losses are L_G = lambda_G * d_g and L_T = -lambda_T * d_t.
    """
    check_reduction(reduction)
    r_gn = relation_matrix_reference(g_noncovid)
    r_gc = relation_matrix_reference(g_covid)
    r_tc = relation_matrix_reference(t_covid)
    if not (r_gn.shape == r_gc.shape == r_tc.shape):
        raise ValueError(
            f"all three feature maps need the same channel count, found "
            f"{g_noncovid.shape[1]}, {g_covid.shape[1]}, {t_covid.shape[1]}"
        )
    c = r_gn.shape[-1]
    d_g = reduce_distance((r_gn - r_gc).pow(2).sum(), c, reduction)
    d_t = reduce_distance((r_gc.detach() - r_tc).pow(2).sum(), c, reduction)
    return d_g, d_t


def relation_matrix_backward_reference(
    grad_r: torch.Tensor,
    features: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    reduce: str | None = "mean",
) -> torch.Tensor:
    """Closed-form gradient of :func:`relation_matrix_reference` (the CPU backward of the op).

    With n_i = ||G_i|| (``norms``, unclamped), f the matrix's :func:`row_floor` and R, dR of
    shape (C, C) or (B, C, C):
    dG_i = (dR_i - R_i <R_i, dR_i>) / n_i where n_i >= f, dR_i / f below the floor,
    dA = (dG + dG^T) A, dF_b = dA / B for ``"mean"`` (dF_b = dA_b per sample).

    Returns:
        dL/dF with the shape and dtype of ``features`` (contiguous).
    """
    _check(features)
    dtype = acc_dtype(features.dtype)
    b, c = features.shape[0], features.shape[1]
    a = features.reshape(b, c, -1).to(dtype)
    if reduce == "mean":
        a = a.mean(dim=0, keepdim=True)
    r3, n2 = r.reshape(-1, c, c).to(dtype), norms.reshape(-1, c).to(dtype)
    dr = grad_r.reshape(-1, c, c).to(dtype)
    floor = row_floor(n2)
    proj = torch.where(n2 >= floor, (r3 * dr).sum(-1), torch.zeros_like(n2))
    dg = (dr - r3 * proj[..., None]) / torch.maximum(n2, floor)[..., None]
    da = (dg + dg.transpose(1, 2)) @ a
    if reduce == "mean":
        da = (da / b).expand(b, c, a.shape[-1])
    return da.to(features.dtype).reshape(features.shape).contiguous()


def relation_losses_backward_reference(
    grad_losses: torch.Tensor,
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    r: torch.Tensor,
    norms: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form gradients of gd_g * d_g + gd_t * d_t (see :func:`relation_losses_reference`).

    Args:
        grad_losses: (2,) upstream (gd_g, gd_t).
        features: (g_noncovid, g_covid, t_covid).
        r, norms: (3, C, C) relation matrices and (3, C) Gram row norms of the three inputs.

    With k = 2 (the sum of Eq. 4-5; the "row" and "mean" reductions divide ``grad_losses``
    by C or C^2 through autograd, see :func:`reduction_divisor`):
    dR_0 = k gd_g (R_0 - R_1), dR_1 = -dR_0 (d_t is detached from R_1),
    dR_2 = -k gd_t (R_1 - R_2).
    """
    k = 2.0
    g = grad_losses.to(r.dtype)
    dr_0 = k * g[0] * (r[0] - r[1])
    dr_2 = -k * g[1] * (r[1] - r[2])
    grads = (dr_0, -dr_0, dr_2)
    return tuple(
        relation_matrix_backward_reference(dr, x, r[t], norms[t])
        for t, (dr, x) in enumerate(zip(grads, features, strict=True))
    )
