"""Pure-PyTorch reference of the relation matrix and the relation-consistency distances.

This is the slow path that every fast path (the Triton kernels) is tested against, and the CPU
implementation used where Triton is not available.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12
"""Row-norm floor: a zero Gram row normalises to a zero row, never NaN."""


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
            G = A A^T, R = G / ||G_row||, shape (C, C). ``None`` gives one matrix per sample,
            shape (B, C, C).

    Returns:
        R in fp32 (fp64 when the input is fp64); rows of zeros for all-zero channels.
    """
    _check(features)
    if reduce not in ("mean", None):
        raise ValueError(f"reduce must be 'mean' or None, found {reduce!r}")
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    a = features.reshape(features.shape[0], features.shape[1], -1).to(dtype)
    if reduce == "mean":
        a = a.mean(dim=0, keepdim=True)
    gram = a @ a.transpose(1, 2)
    r = F.normalize(gram, p=2.0, dim=-1, eps=EPS)
    return r[0] if reduce == "mean" else r


def relation_losses_reference(
    g_noncovid: torch.Tensor, g_covid: torch.Tensor, t_covid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two relation-consistency distances of Algorithm 1 (unweighted, batch-mean relations).

    Args:
        g_noncovid: (B, C, *spatial) general-encoder features of the non-COVID batch X_n.
        g_covid: (B', C, *spatial) general-encoder features of the COVID batch X_c.
        t_covid: (B', C, *spatial) target-encoder features of the COVID batch X_c.

    Returns:
        ``(d_g, d_t)`` scalars, both reduced by the MEAN over the C*C matrix entries:
        d_g = mean((R(g_noncovid) - R(g_covid))^2), gradient into both G inputs;
        d_t = mean((R(g_covid).detach() - R(t_covid))^2), gradient into ``t_covid`` only.
        The losses are L_G = lambda_G * d_g and L_T = -lambda_T * d_t.
    """
    r_gn = relation_matrix_reference(g_noncovid)
    r_gc = relation_matrix_reference(g_covid)
    r_tc = relation_matrix_reference(t_covid)
    if not (r_gn.shape == r_gc.shape == r_tc.shape):
        raise ValueError(
            f"all three feature maps need the same channel count, found "
            f"{g_noncovid.shape[1]}, {g_covid.shape[1]}, {t_covid.shape[1]}"
        )
    d_g = (r_gn - r_gc).pow(2).mean()
    d_t = (r_gc.detach() - r_tc).pow(2).mean()
    return d_g, d_t
