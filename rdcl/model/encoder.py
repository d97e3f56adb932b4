"""The U-Net encoder of paper Table I, built from a :class:`rdcl.config.ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from rdcl.config import ModelConfig

from .blocks import ConvStage


class Encoder(nn.Module):
    """Stages of ``convs_per_stage`` conv -> InstanceNorm -> LeakyReLU blocks.

    Stage i has ``cfg.features[i]`` channels and kernel ``cfg.kernels[i]``; its first conv has
    stride ``cfg.strides[i]`` (stage 0 has stride 1, so no downsampling).

    ``forward(x)`` takes (B, in_channels, *spatial) and returns the output of every stage, highest
    resolution first: ``[skip_0, ..., skip_{n-2}, bottleneck]`` where stage i has shape
    (B, features[i], *spatial / prod(strides[:i+1])). The last entry is the bottleneck.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.in_channels = cfg.in_channels
        self.output_channels: tuple[int, ...] = tuple(cfg.features)
        self.strides: tuple[tuple[int, ...], ...] = tuple(tuple(s) for s in cfg.strides)
        stages = []
        in_channels = cfg.in_channels
        for features, kernel, stride in zip(cfg.features, cfg.kernels, cfg.strides, strict=True):
            stages.append(
                ConvStage(
                    dim=cfg.dim,
                    in_channels=in_channels,
                    out_channels=features,
                    kernel=kernel,
                    stride=stride,
                    num_convs=cfg.convs_per_stage,
                    eps=cfg.norm_eps,
                    negative_slope=cfg.negative_slope,
                )
            )
            in_channels = features
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs, highest resolution first (last = bottleneck); see the class docstring."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
