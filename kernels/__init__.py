"""Relation kernels (installed as ``rdcl.kernels``): the relation matrix and the relation losses.

Public entry points used by the training losses:

- :func:`relation_matrix` (``features`` (B, C, *spatial) -> R (C, C), or (B, C, C) per sample)
- :func:`relation_losses` (three feature maps -> (d_g, d_t), the squared Frobenius norms of
  Eq. 4-5, i.e. SUMS over the C x C entries; ``reduction="row"`` divides them by C,
  ``reduction="mean"`` by C^2)

Both are ``torch.library`` custom ops (``rdcl::relation_matrix``, ``rdcl::relation_losses``) with
fake and autograd registrations: Triton on CUDA (and on CPU under ``TRITON_INTERPRET=1``), the
pure-PyTorch reference otherwise. Under ``torch.distributed`` with world size > 1 the batch mean
covers the global batch (see :mod:`rdcl.kernels.global_mean`).
"""

from __future__ import annotations

import torch

from .global_mean import distributed_active, global_relation_losses, global_relation_matrix
from .ops import relation_losses_op, relation_matrix_op, use_triton
from .reference import (
    EPS,
    REDUCTIONS,
    ROW_FLOOR,
    check_reduction,
    reduction_divisor,
    relation_losses_reference,
    relation_matrix_reference,
)


def relation_matrix(
    features: torch.Tensor,
    reduce: str | None = "mean",
    *,
    group: torch.distributed.ProcessGroup | None = None,
) -> torch.Tensor:
    """Row-L2-normalised channel Gram matrix (same semantics as the reference).

    Args:
        features: (B, C, *spatial) feature maps, any float dtype and strides.
        reduce: ``"mean"``: R (C, C) of the batch mean A = mean_b F_b (the GLOBAL batch when
            torch.distributed runs with world size > 1); ``None``: (B, C, C), one per sample.
        group: process group for the global batch mean (default: the world).

    Returns:
        R in fp32 (fp64 for fp64 input); all-zero channels give zero rows, never NaN.

    Raises:
        ValueError: ``features`` has fewer than 2 dims or ``reduce`` is not "mean"/None.
    """
    if reduce not in ("mean", None):
        raise ValueError(f"reduce must be 'mean' or None, found {reduce!r}")
    if features.dim() < 2:
        raise ValueError(
            f"features must be (B, C, *spatial) with at least 2 dims, found shape "
            f"{tuple(features.shape)}"
        )
    if reduce == "mean" and distributed_active(group):
        return global_relation_matrix(features, group)
    r, _ = relation_matrix_op(features, reduce is None)
    return r


def relation_losses(
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    *,
    reduction: str = "sum",
    group: torch.distributed.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two relation-consistency distances, fused (4 Triton launches forward + backward).

    Args:
        g_noncovid: (B, C, *spatial) general-encoder features of the non-COVID batch.
        g_covid: (B', C, *spatial') general-encoder features of the COVID batch.
        t_covid: (B', C, *spatial') target-encoder features of the COVID batch.
        reduction: ``"sum"`` (default, the paper's squared Frobenius norm, at most 4C), ``"row"``
            (that sum / C, at most 4) or ``"mean"`` (that sum / C^2); the divisor comes from
            :func:`rdcl.kernels.reference.reduction_divisor`, applied to the kernels' sums.
        group: process group for the global batch mean (default: the world).

    Returns:
        ``(d_g, d_t)`` scalars: d_g = ||R_gn - R_gc||_F^2 with gradient into both G inputs;
        d_t = ||R_gc.detach() - R_tc||_F^2, gradient into ``t_covid`` only (each / C for
        ``"row"``, / C^2 for ``"mean"``). L_G = lambda_G * d_g, L_T = -lambda_T * d_t. Rows are
        normalised with the relative floor of :mod:`rdcl.kernels.reference` (``ROW_FLOOR``), so
        every row of R has norm <= 1 and each summed d is at most 4 C.

    Raises:
        ValueError: unknown ``reduction`` or differing channel counts.
    """
    divisor = reduction_divisor(g_noncovid.shape[1], reduction)  # checks ``reduction``
    if distributed_active(group):
        d_g, d_t = global_relation_losses(g_noncovid, g_covid, t_covid, group)
    else:
        losses, _, _ = relation_losses_op(g_noncovid, g_covid, t_covid)
        d_g, d_t = losses[0], losses[1]
    if divisor == 1:
        return d_g, d_t
    return d_g / divisor, d_t / divisor


__all__ = [
    "EPS",
    "REDUCTIONS",
    "ROW_FLOOR",
    "check_reduction",
    "reduction_divisor",
    "relation_losses",
    "relation_losses_reference",
    "relation_matrix",
    "relation_matrix_reference",
    "use_triton",
]
