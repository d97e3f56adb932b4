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


def relation_matrix_backward_reference(
    grad_r: torch.Tensor,
    features: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    reduce: str | None = "mean",
) -> torch.Tensor:
    """Closed-form gradient of :func:`relation_matrix_reference` (the CPU backward of the op).

    With n_i = ||G_i|| (``norms``, unclamped) and R, dR of shape (C, C) or (B, C, C):
    dG_i = (dR_i - R_i <R_i, dR_i>) / n_i (dR_i / eps where n_i < eps, as F.normalize),
    dA = (dG + dG^T) A, dF_b = dA / B for ``"mean"`` (dF_b = dA_b per sample).

    Returns:
        dL/dF with the shape and dtype of ``features`` (contiguous).
    """
    _check(features)
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    b, c = features.shape[0], features.shape[1]
    a = features.reshape(b, c, -1).to(dtype)
    if reduce == "mean":
        a = a.mean(dim=0, keepdim=True)
    r3, n2 = r.reshape(-1, c, c).to(dtype), norms.reshape(-1, c).to(dtype)
    dr = grad_r.reshape(-1, c, c).to(dtype)
    proj = torch.where(n2 >= EPS, (r3 * dr).sum(-1), torch.zeros_like(n2))
    dg = (dr - r3 * proj[..., None]) / n2.clamp_min(EPS)[..., None]
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

    With k = 2 / C^2: dR_0 = k gd_g (R_0 - R_1), dR_1 = -dR_0 (d_t is detached from R_1),
    dR_2 = -k gd_t (R_1 - R_2).
    """
    c = r.shape[-1]
    k = 2.0 / (c * c)
    g = grad_losses.to(r.dtype)
    dr_0 = k * g[0] * (r[0] - r[1])
    dr_2 = -k * g[1] * (r[1] - r[2])
    grads = (dr_0, -dr_0, dr_2)
    return tuple(
        relation_matrix_backward_reference(dr, x, r[t], norms[t])
        for t, (dr, x) in enumerate(zip(grads, features, strict=True))
    )
