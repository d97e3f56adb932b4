"""Segmentation loss: soft Dice (nnU-Net batch Dice) + binary cross-entropy, on logits."""

from __future__ import annotations

import torch
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


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = DICE_SMOOTH,
    batch_dice: bool = True,
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
    dice = (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(1e-8)
    return 1.0 - dice.mean()


class DiceBCELoss(nn.Module):
    """``weight_dice * soft_dice_loss + weight_bce * BCE-with-logits`` (nnU-Net's Dice + CE for a
    binary lesion channel).

    The BCE term is the MEAN over all B * C * voxels; the Dice term is :func:`soft_dice_loss`
    (batch Dice by default). Inputs: logits (B, C, *spatial) and a {0, 1} target of the same shape.
    Returns a scalar.
    """

    def __init__(
        self,
        *,
        weight_dice: float = 1.0,
        weight_bce: float = 1.0,
        smooth: float = DICE_SMOOTH,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        self.weight_dice = weight_dice
        self.weight_bce = weight_bce
        self.smooth = smooth
        self.batch_dice = batch_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss; see the class docstring."""
        _check_pair(logits, target)
        logits32 = logits.float()
        y = target.to(logits32.dtype)
        dice = soft_dice_loss(logits32, y, smooth=self.smooth, batch_dice=self.batch_dice)
        bce = F.binary_cross_entropy_with_logits(logits32, y, reduction="mean")
        return self.weight_dice * dice + self.weight_bce * bce
