"""Soft Dice + BCE against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from rdcl.losses import DiceBCELoss, soft_dice_loss

S = 1e-5  # Dice smoothing

# The 2x2 example. logits [[0, ln 3], [-ln 3, 0]] -> p = sigmoid = [[1/2, 3/4], [1/4, 1/2]];
# target [[1, 1], [0, 0]].
LOGITS = torch.tensor([[[[0.0, math.log(3.0)], [-math.log(3.0), 0.0]]]])
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])


def test_dice_2x2_golden() -> None:
    # sum(p y) = 1/2 + 3/4 = 5/4; sum(p) = 2; sum(y) = 2.
    # dice = (2 * 5/4 + S) / (2 + 2 + S) = (2.5 + S) / (4 + S) ~ 0.625 -> loss ~ 0.375.
    expected = 1.0 - (2.5 + S) / (4.0 + S)
    assert soft_dice_loss(LOGITS, TARGET).item() == pytest.approx(expected, abs=1e-7)


def test_dice_bce_2x2_golden() -> None:
    # BCE per pixel: y=1,p=1/2 -> ln 2; y=1,p=3/4 -> ln 4/3; y=0,p=1/4 -> -ln(3/4) = ln 4/3;
    # y=0,p=1/2 -> ln 2. Mean = (2 ln 2 + 2 ln 4/3) / 4 = ln(8/3) / 2 ~ 0.4904.
    bce = math.log(8.0 / 3.0) / 2.0
    dice = 1.0 - (2.5 + S) / (4.0 + S)
    assert DiceBCELoss()(LOGITS, TARGET).item() == pytest.approx(dice + bce, abs=1e-6)
    weighted = DiceBCELoss(weight_dice=2.0, weight_bce=0.5)(LOGITS, TARGET).item()
    assert weighted == pytest.approx(2.0 * dice + 0.5 * bce, abs=1e-6)


def test_batch_dice_differs_from_per_sample_dice() -> None:
    # Two samples of 2 pixels, p = 1/2 everywhere; sample A all lesion, sample B empty.
    logits = torch.zeros(2, 1, 2)
    target = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]]])
    # Batch Dice: sum(p y) = 1, sum(p) = 2, sum(y) = 2 -> dice (2 + S)/(4 + S) ~ 1/2.
    batch = soft_dice_loss(logits, target, batch_dice=True).item()
    assert batch == pytest.approx(1.0 - (2.0 + S) / (4.0 + S), abs=1e-7)
    # Per sample: A = (2 + S)/(3 + S) ~ 2/3, B = S/(1 + S) ~ 0 -> mean ~ 1/3, loss ~ 2/3.
    per_sample = soft_dice_loss(logits, target, batch_dice=False).item()
    expected = 1.0 - ((2.0 + S) / (3.0 + S) + S / (1.0 + S)) / 2.0
    assert per_sample == pytest.approx(expected, abs=1e-7)


def test_confident_correct_prediction_is_near_zero_and_differentiable() -> None:
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    logits = (target * 2 - 1) * 20.0
    logits.requires_grad_(True)
    loss = DiceBCELoss()(logits, target)
    assert loss.item() < 1e-6
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_half_precision_logits_computed_in_fp32() -> None:
    assert DiceBCELoss()(LOGITS.half(), TARGET).dtype == torch.float32


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="target must have the logits' shape"):
        DiceBCELoss()(LOGITS, TARGET[0])
    with pytest.raises(ValueError, match="at least one spatial axis"):
        soft_dice_loss(torch.zeros(2, 1), torch.zeros(2, 1))
