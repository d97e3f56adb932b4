"""Deep-supervision weights, target downsampling and the weighted multi-scale loss."""

from __future__ import annotations

import pytest
import torch

from rdcl.losses import DeepSupervisionLoss, DiceBCELoss, deep_supervision_weights
from rdcl.losses.deep_supervision import downsample_target


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [1.0]),
        (2, [1.0, 0.0]),
        # raw [1, 1/2, 0] sums to 3/2.
        (3, [2 / 3, 1 / 3, 0.0]),
        # raw [1, 1/2, 1/4, 1/8, 0] sums to 15/8.
        (5, [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0]),
    ],
)
def test_weights(n: int, expected: list[float]) -> None:
    assert deep_supervision_weights(n) == pytest.approx(expected, abs=1e-12)


def test_weights_reject_zero_outputs() -> None:
    with pytest.raises(ValueError, match="at least one output"):
        deep_supervision_weights(0)


def test_downsample_target_is_nearest_and_binary() -> None:
    target = (torch.arange(4 * 8 * 8).reshape(1, 1, 4, 8, 8) % 3 == 0).float()
    small = downsample_target(target, (4, 4, 4))
    # Nearest with factor (1, 2, 2): voxel (z, y, x) <- (z, 2y, 2x).
    torch.testing.assert_close(small, target[:, :, :, ::2, ::2])
    assert set(small.unique().tolist()) == {0.0, 1.0}
    assert downsample_target(target, (4, 8, 8)) is target


class _MeanTarget:
    """A fake per-scale loss whose value is mean(target) + 0 * logits (records the targets)."""

    def __init__(self) -> None:
        self.targets: list[torch.Tensor] = []

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.targets.append(target)
        return target.mean() + 0.0 * logits.sum()


def test_weighted_sum_over_scales_with_downsampled_target() -> None:
    # Target 8x8 with a 4x4 lesion block at rows/cols 0..3: mean 1/4 at every scale
    # (nearest 4x4 keeps rows/cols 0, 2 -> 2x2 of 1s in 4x4 = 1/4; 2x2 keeps (0,0) -> 1/4).
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4, :4] = 1.0
    outputs = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    fake = _MeanTarget()
    loss = DeepSupervisionLoss(fake)(outputs, target)
    # Weights [2/3, 1/3, 0] -> 2/3 * 1/4 + 1/3 * 1/4 + 0 * 1/4 = 1/4.
    assert loss.item() == pytest.approx(0.25)
    assert [tuple(t.shape[2:]) for t in fake.targets] == [(8, 8), (4, 4), (2, 2)]


def test_explicit_weights_and_target_list() -> None:
    targets = [torch.ones(1, 1, 4, 4), torch.full((1, 1, 2, 2), 0.5)]
    outputs = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    loss = DeepSupervisionLoss(_MeanTarget(), weights=[0.25, 0.75])(outputs, targets)
    assert loss.item() == pytest.approx(0.25 * 1.0 + 0.75 * 0.5)
    with pytest.raises(ValueError, match="2 outputs but 3 deep-supervision weights"):
        DeepSupervisionLoss(_MeanTarget(), weights=[1, 0, 0])(outputs, targets)
    with pytest.raises(ValueError, match="2 outputs but 1 targets"):
        DeepSupervisionLoss(_MeanTarget())(outputs, targets[:1])


def test_single_eval_output_equals_plain_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 4, 6, generator=gen)
    target = (torch.rand(2, 1, 4, 6, generator=gen) > 0.5).float()
    single = DeepSupervisionLoss(DiceBCELoss())([logits], target)
    torch.testing.assert_close(single, DiceBCELoss()(logits, target))


def test_zero_weight_scale_still_gets_zero_gradient() -> None:
    outputs = [
        torch.randn(1, 1, 4, 4, requires_grad=True),
        torch.randn(1, 1, 2, 2, requires_grad=True),
    ]
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1.0
    DeepSupervisionLoss(DiceBCELoss())(outputs, target).backward()
    assert outputs[0].grad.abs().sum() > 0
    assert outputs[1].grad is not None and torch.count_nonzero(outputs[1].grad) == 0
