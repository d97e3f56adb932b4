"""A tiny TorchScript module honouring the exported-predictor contract, for the C++ app tests.

forward(image float32 (Z, Y, X) or (Y, X), spacing float64 (3,) or (2,) mm) -> uint8 0/1;
probabilities(image, spacing) -> float32. An in-plane 3x3 mean filter, then a logistic of the
difference to a threshold scaled by the mean spacing, so both the voxels and the spacing the app
passes in change the mask.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


class TinyPredictor(torch.nn.Module):
    """Smoothed-threshold "segmenter" (no training), scriptable."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = threshold

    @torch.jit.export
    def probabilities(self, image: Tensor, spacing: Tensor) -> Tensor:
        """Float32 probabilities of the image's shape."""
        x = image.to(torch.float32)
        if x.dim() != 2 and x.dim() != 3:
            raise ValueError("expected a 2D or 3D image")
        # in-plane smoothing, slice by slice, as a 2D model on a volume runs
        slices = x[None] if x.dim() == 2 else x
        s = F.avg_pool2d(slices[:, None], 3, stride=1, padding=1, count_include_pad=False)
        s = s[:, 0].reshape(x.shape)
        if spacing.numel() != x.dim():
            raise ValueError("spacing must have one entry per image axis")
        scale = spacing.to(torch.float32).mean()
        return torch.sigmoid((s - self.threshold * scale) * 0.05)

    def forward(self, image: Tensor, spacing: Tensor) -> Tensor:
        """Uint8 0/1 mask of the image's shape."""
        return (self.probabilities(image, spacing) > 0.5).to(torch.uint8)

    @torch.jit.export
    def forward_window(self, image: Tensor, spacing: Tensor, window: Tensor) -> Tensor:
        """As forward, the input's ``window`` (low, high) mapped onto (-1250, 250) first."""
        low, high = window[0].item(), window[1].item()
        mapped = (image.to(torch.float64) - low) / (high - low) * 1500.0 - 1250.0
        return self.forward(mapped.to(torch.float32), spacing)


def save_tiny_model(path: Path, threshold: float = 0.0) -> Path:
    """Script :class:`TinyPredictor` and save it to ``path``."""
    torch.jit.script(TinyPredictor(threshold)).save(str(path))
    return path


class ForwardOnlyPredictor(torch.nn.Module):
    """Honours ``forward`` but has no ``probabilities`` method."""

    def forward(self, image: Tensor, spacing: Tensor) -> Tensor:
        """Uint8 mask of positive voxels."""
        return (image > 0).to(torch.uint8)


class BoolMaskPredictor(torch.nn.Module):
    """Breaks the contract: returns a bool mask instead of uint8."""

    def forward(self, image: Tensor, spacing: Tensor) -> Tensor:
        """Bool mask of positive voxels."""
        return image > 0


class VolumeOnlyPredictor(torch.nn.Module):
    """Raises on anything but a (Z, Y, X) volume."""

    def forward(self, image: Tensor, spacing: Tensor) -> Tensor:
        """Uint8 mask of positive voxels of a volume."""
        if image.dim() != 3:
            raise ValueError("expected a (Z, Y, X) volume")
        return (image > 0).to(torch.uint8)
