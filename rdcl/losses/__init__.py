"""rdcl.losses: Dice + BCE, deep supervision, relation-consistency losses with ramp-up."""

from __future__ import annotations

from .consistency import (
    RELATION_TERMS,
    describe_rampup,
    rampup,
    relation_consistency,
    resolved_rampup_steps,
)
from .deep_supervision import DeepSupervisionLoss, deep_supervision_weights, downsample_target
from .segmentation import DiceBCELoss, soft_dice_loss

__all__ = [
    "RELATION_TERMS",
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "deep_supervision_weights",
    "describe_rampup",
    "downsample_target",
    "rampup",
    "relation_consistency",
    "resolved_rampup_steps",
    "soft_dice_loss",
]
