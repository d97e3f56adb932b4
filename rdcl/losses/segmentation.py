"""Segmentation loss: soft Dice (nnU-Net batch Dice) + binary cross-entropy, on logits."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

DICE_SMOOTH = 1e-5
"""Added to the Dice numerator and denominator (nnU-Net's value)."""


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() < 3:
        raise ValueError(
            f"logits must be (B, C, *spatial) with at least one spatial axis, found shape "
            f"{tuple(logits.shape)}"
        )
    if logits.shape != target.shape:
        raise ValueError(
            f"target must have the logits' shape {tuple(logits.shape)}, found {tuple(target.shape)}"
        )


class _AllReduceSum(torch.autograd.Function):
    """Differentiable SUM all-reduce: forward and backward are both a SUM over the ranks.

    Gradient convention (as ``rdcl.kernels.global_mean``): every rank computes the same loss of the
    global sums, so the backward all-reduce hands each rank W times the gradient of that one loss;
    DDP's average over the W ranks then yields exactly the gradient of the global-batch loss.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def global_sum(tensor: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Sum of ``tensor`` over the ranks of ``group`` (identity without torch.distributed or with
    one rank); differentiable, see :class:`_AllReduceSum`. Collective: every rank must call it."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1):
        return tensor
    return _AllReduceSum.apply(tensor, group)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = DICE_SMOOTH,
    batch_dice: bool = True,
    sync: bool = False,
) -> torch.Tensor:
    """Soft Dice loss on sigmoid probabilities.

    With p = sigmoid(logits) and y = target, per channel c:
    ``dice_c = (2 sum(p y) + smooth) / (sum(p) + sum(y) + smooth)`` where the sums run over the
    batch and spatial axes (``batch_dice=True``, nnU-Net's batch Dice: the batch is one big
    sample) or over the spatial axes only (one Dice per sample and channel). The loss is
    ``1 - mean(dice)`` (the mean over channels, and samples without batch Dice), in [0, 1].

    Args:
        logits: (B, C, *spatial) raw scores (any float dtype; computed in fp32).
        target: same shape, values in {0, 1} (soft values in [0, 1] also work).
        smooth: numerator/denominator smoothing; an empty target with an all-negative prediction
            gives dice ~ 1 and loss ~ 0.
        batch_dice: sum over the batch axis too.
        sync: with ``batch_dice`` under ``torch.distributed`` (DDP), sum the per-channel
            intersection and denominator over every rank before the ratio, so the batch is the
            GLOBAL batch: the loss and (after DDP's gradient average) the gradients equal a single
            process on the concatenated batch. Batch Dice is a ratio of batch sums, not a mean of
            per-rank values, so it cannot be averaged afterwards. Collective (every rank calls).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: shapes differ or there is no spatial axis.
    """
    _check_pair(logits, target)
    p = torch.sigmoid(logits.float())
    y = target.to(p.dtype)
    axes = [0, *range(2, p.dim())] if batch_dice else list(range(2, p.dim()))
    intersection = (p * y).sum(dim=axes)
    denominator = p.sum(dim=axes) + y.sum(dim=axes)
    if sync and batch_dice:
        both = global_sum(torch.stack([intersection, denominator]))
        intersection, denominator = both[0], both[1]
    dice = (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(1e-8)
    return 1.0 - dice.mean()


class DiceBCELoss(nn.Module):
    """``weight_dice * soft_dice_loss + weight_bce * BCE-with-logits`` (nnU-Net's Dice + CE for a
    binary lesion channel).

    The BCE term is the MEAN over all B * C * voxels; the Dice term is :func:`soft_dice_loss`
    (batch Dice by default). Inputs: logits (B, C, *spatial) and a {0, 1} target of the same shape.
    Returns a scalar. ``sync=True`` (DDP training) makes the batch Dice global over the ranks (see
    :func:`soft_dice_loss`); the BCE mean needs no sync when every rank holds the same batch size,
    since DDP averages the per-rank gradients.
    """

    def __init__(
        self,
        *,
        weight_dice: float = 1.0,
        weight_bce: float = 1.0,
        smooth: float = DICE_SMOOTH,
        batch_dice: bool = True,
        sync: bool = False,
    ) -> None:
        super().__init__()
        self.sync = sync
        self.weight_dice = weight_dice
        self.weight_bce = weight_bce
        self.smooth = smooth
        self.batch_dice = batch_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss; see the class docstring."""
        _check_pair(logits, target)
        logits32 = logits.float()
        y = target.to(logits32.dtype)
        dice = soft_dice_loss(
            logits32, y, smooth=self.smooth, batch_dice=self.batch_dice, sync=self.sync
        )
        bce = F.binary_cross_entropy_with_logits(logits32, y, reduction="mean")
        return self.weight_dice * dice + self.weight_bce * bce
