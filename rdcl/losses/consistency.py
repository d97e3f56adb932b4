"""Relation-consistency losses L_G and L_T of Algorithm 1, with the sigmoid ramp-up.

The distances come from :func:`rdcl.kernels.relation_losses` (Triton on CUDA, the PyTorch
reference otherwise), looked up at call time so the fastest registered path is used.
"""

from __future__ import annotations

import math

import torch

from rdcl import kernels
from rdcl.config import TrainConfig

RELATION_TERMS = ("d_g", "d_t", "loss_g", "loss_t")
"""Keys of the dict returned by :func:`relation_consistency`."""


def rampup(step: int | float, rampup_steps: int) -> float:
    """Sigmoid-shaped ramp ``exp(-5 (1 - t)^2)`` with ``t = clip(step / rampup_steps, 0, 1)``.

    Gives exp(-5) ~ 0.0067 at step 0, exp(-1.25) ~ 0.287 halfway and 1 from ``rampup_steps`` on;
    ``rampup_steps = 0`` means no ramp (always 1).

    Raises:
        ValueError: ``rampup_steps < 0``.
    """
    if rampup_steps < 0:
        raise ValueError(f"rampup_steps must be >= 0, found {rampup_steps}")
    if rampup_steps == 0:
        return 1.0
    t = min(max(step / rampup_steps, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def resolved_rampup_steps(cfg: TrainConfig) -> int:
    """The stage-2 ramp length in steps: the one place the ramp settings are resolved.

    ``cfg.rampup_steps`` when it is set (absolute steps; it wins over the fraction), otherwise
    ``round(cfg.rampup_fraction * cfg.steps)`` (halves rounded up). 0 means no ramp.

    Args:
        cfg: the training section (``steps`` is the stage-2 step count the fraction refers to).

    Returns:
        The ramp length in optimiser steps, >= 0.
    """
    if cfg.rampup_steps is not None:
        return cfg.rampup_steps
    return math.floor(cfg.rampup_fraction * cfg.steps + 0.5)


def describe_rampup(cfg: TrainConfig) -> str:
    """One phrase naming the resolved ramp and where it came from, for logs and reports, e.g.
    ``"600 of 1000 steps (train.rampup_fraction 0.6)"``."""
    steps = resolved_rampup_steps(cfg)
    source = (
        f"train.rampup_steps {cfg.rampup_steps}; train.rampup_fraction ignored"
        if cfg.rampup_steps is not None
        else f"train.rampup_fraction {cfg.rampup_fraction:g}"
    )
    return f"{steps} of {cfg.steps} steps ({source})"


def relation_consistency(
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    *,
    lambda_g: float,
    lambda_t: float,
    ramp: float = 1.0,
    reduction: str = "sum",
) -> dict[str, torch.Tensor]:
    """The relation terms of Algorithm 1.

    Args:
        g_noncovid: (B, C, *spatial) general-encoder features of the non-COVID batch X_n.
        g_covid: (B', C, *spatial) general-encoder features of the COVID batch X_c.
        t_covid: (B', C, *spatial) target-encoder features of X_c.
        lambda_g, lambda_t: final loss weights.
        ramp: the ramp-up factor in [0, 1] (see :func:`rampup`).
        reduction: ``"sum"`` (default): the squared Frobenius norm of the paper's Eq. 4-5, a sum
            over the C x C entries (at most 4C); ``"row"``: that sum / C (at most 4);
            ``"mean"``: that sum / C^2.

    Returns:
        ``{"d_g", "d_t", "loss_g", "loss_t"}`` scalars (fp32). Relation matrices are batch-mean
        (C, C) matrices R (see ``rdcl.kernels.relation_matrix``; rows normalised with a floor of
        1e-3 times the largest row norm; every row has norm <= 1); with ``reduction="sum"``:
        ``d_g = ||R_G(X_n) - R_G(X_c)||_F^2`` (gradient into G's two inputs),
        ``d_t = ||R_G(X_c).detach() - R_T(X_c)||_F^2`` (gradient into ``t_covid`` only),
        ``loss_g = lambda_g * ramp * d_g`` and ``loss_t = -lambda_t * ramp * d_t`` (minimising
        ``loss_t`` pushes T's relations away from G's: T becomes discriminative).
    """
    d_g, d_t = kernels.relation_losses(g_noncovid, g_covid, t_covid, reduction=reduction)
    return {
        "d_g": d_g,
        "d_t": d_t,
        "loss_g": (lambda_g * ramp) * d_g,
        "loss_t": (-lambda_t * ramp) * d_t,
    }
