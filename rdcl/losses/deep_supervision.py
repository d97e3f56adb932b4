"""Deep supervision: nnU-Net's exponentially decaying weights and the multi-scale loss wrapper."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def deep_supervision_weights(n: int) -> list[float]:
    """Loss weights for ``n`` outputs ordered highest resolution first (nnU-Net).

    ``w_i = 1 / 2^i``, the lowest-resolution output gets 0, then the weights are normalised to sum
    to 1; ``n = 1`` gives ``[1.0]``. Example: n = 3 -> [2/3, 1/3, 0].

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"need at least one output, found n={n}")
    if n == 1:
        return [1.0]
    raw = [1.0 / 2**i for i in range(n - 1)] + [0.0]
    total = sum(raw)
    return [w / total for w in raw]


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label map (B, C, *spatial) to ``size`` (labels stay {0, 1}).

    Output voxel i takes input voxel ``floor(i * in / out)`` per axis (for a factor 2: every other
    voxel, starting at 0), as nnU-Net's order-0 target downsampling. Returns ``target`` itself when
    the size already matches; the output has the input's dtype.
    """
    size = tuple(int(s) for s in size)
    if tuple(target.shape[2:]) == size:
        return target
    if len(size) != target.dim() - 2:
        raise ValueError(
            f"size needs {target.dim() - 2} spatial entries for target shape "
            f"{tuple(target.shape)}, found {size}"
        )
    resized = F.interpolate(target.float(), size=size, mode="nearest")
    return resized.to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``loss(output_i, target_i)`` over multi-scale outputs.

    Args:
        loss: a per-scale loss ``(logits, target) -> scalar`` (e.g. :class:`DiceBCELoss`).
        weights: one weight per output, highest resolution first; ``None`` uses
            :func:`deep_supervision_weights` of the number of outputs given at each call (so a
            single eval-mode output gets weight 1).

    ``forward(outputs, target)``: ``outputs`` is the network's list of logits (B, C, *spatial_i),
    highest resolution first; ``target`` is either the full-resolution {0, 1} target, downsampled
    with :func:`downsample_target` to each output's size, or a list with one target per output.
    Returns ``sum_i w_i * loss(outputs[i], target_i)``. Zero-weight outputs are still evaluated
    (cheap at the lowest scale) so every head receives a (zero) gradient and DDP needs no
    ``find_unused_parameters``.
    """

    def __init__(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(
        self,
        outputs: Sequence[torch.Tensor],
        target: torch.Tensor | Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Scalar weighted loss; see the class docstring."""
        n = len(outputs)
        weights = deep_supervision_weights(n) if self.weights is None else self.weights
        if len(weights) != n:
            raise ValueError(f"got {n} outputs but {len(weights)} deep-supervision weights")
        if isinstance(target, torch.Tensor):
            targets = [downsample_target(target, o.shape[2:]) for o in outputs]
        else:
            targets = list(target)
            if len(targets) != n:
                raise ValueError(f"got {n} outputs but {len(targets)} targets")
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out, tgt in zip(weights, outputs, targets, strict=True):
            total = total + w * self.loss(out, tgt)
        return total
