"""Optimiser, learning-rate schedule and gradient clipping (paper + nnU-Net defaults).

SGD with lr 0.01, momentum 0.99, Nesterov, weight decay 3e-5; the poly schedule
lr_t = lr * (1 - t / T)^0.9 set before every step t = 0 .. T-1; the gradient norm clipped to 12.
The relation-loss weights ramp up with :func:`rdcl.losses.rampup`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.hooks import RemovableHandle

from rdcl.config import TrainConfig


def poly_lr(step: int, total_steps: int, base_lr: float, exponent: float = 0.9) -> float:
    """Poly learning rate ``base_lr * (1 - step / total_steps) ** exponent``.

    Args:
        step: 0-based index of the step about to be taken, ``0 <= step <= total_steps``.
        total_steps: the number of steps of the stage (> 0).

    Returns:
        ``base_lr`` at step 0, falling to ``base_lr * (1 / T)^exponent`` at the last step T-1.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, found {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, {total_steps}], found {step}")
    return base_lr * (1.0 - step / total_steps) ** exponent


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    cfg: TrainConfig,
    *,
    general: Iterable[torch.nn.Parameter] = (),
) -> torch.optim.SGD:
    """One SGD optimiser over ``params`` with the configured momentum, Nesterov and decay
    (``fused=True`` with ``cfg.fused_sgd``: one kernel for the whole update).

    ``general``: G's parameters (a subset of ``params``; stage 2 of ``rdcl``/``rdcl_g``). When
    ``cfg.general_weight_decay`` differs from ``cfg.weight_decay`` they form a second parameter
    group, after the first, with weight decay ``cfg.general_weight_decay``
    (``docs/relation_weights.md``, "Keeping G alive"); otherwise the optimiser has one group,
    exactly as without ``general``, so checkpoints written before the option existed resume.

    Raises:
        ValueError: when ``params`` is empty (every parameter frozen).
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    g_ids = {id(p) for p in general if p.requires_grad}
    groups: list[dict] = [{"params": params}]
    if g_ids and cfg.general_weight_decay != cfg.weight_decay:
        groups = [
            {"params": [p for p in params if id(p) not in g_ids]},
            {
                "params": [p for p in params if id(p) in g_ids],
                "weight_decay": cfg.general_weight_decay,
            },
        ]
        groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        fused=True if cfg.fused_sgd else None,
    )


def anchor_parameters(
    optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], strength: float
) -> RemovableHandle | None:
    """Pull ``params`` towards their current values (``train.general_anchor``: G towards its
    stage-1 weights) on every ``optimizer.step()``.

    A step pre-hook adds ``strength * (theta - theta_0)`` to each parameter's gradient, with
    theta_0 a copy of the parameters taken now: SGD weight decay centred on theta_0 instead of 0
    (the L2-SP penalty ``strength / 2 * ||theta - theta_0||^2``), added after the gradient clip as
    weight decay is. Call it before a resumed checkpoint overwrites the weights, so that theta_0
    stays the starting point. Returns the hook's handle, or None (nothing registered) when
    ``strength`` is 0 or no parameter trains.
    """
    params = [p for p in params if p.requires_grad]
    if strength == 0 or not params:
        return None
    origin = [p.detach().clone() for p in params]

    def pull(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        with torch.no_grad():
            for p, p0 in zip(params, origin, strict=True):
                if p.grad is None:
                    p.grad = (p - p0).mul_(strength)
                else:
                    p.grad.add_(p - p0, alpha=strength)

    return optimizer.register_step_pre_hook(pull)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of the gradients to ``max_norm``; returns the norm before clipping.

    The norm is taken over every gradient together (G, T and D alike), as nnU-Net does. A
    non-finite norm is returned as is (the caller stops training before the optimiser step).
    """
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))


def clip_gradients_tensor(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """:func:`clip_gradients` without a host synchronisation: the norm before clipping as a 0-dim
    fp32 tensor on the gradients' device (0 on the CPU when no parameter has a gradient)."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(grads, max_norm)
