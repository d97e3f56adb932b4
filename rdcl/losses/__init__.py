"""rdcl.losses: Dice + BCE, deep supervision, relation-consistency losses with ramp-up."""

from __future__ import annotations

from .consistency import RELATION_TERMS, RelationConsistencyLoss, rampup, relation_consistency
from .deep_supervision import DeepSupervisionLoss, deep_supervision_weights, downsample_target
from .segmentation import DiceBCELoss, soft_dice_loss

__all__ = [
    "RELATION_TERMS",
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "RelationConsistencyLoss",
    "deep_supervision_weights",
    "downsample_target",
    "rampup",
    "relation_consistency",
    "soft_dice_loss",
]
