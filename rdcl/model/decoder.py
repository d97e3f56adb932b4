"""The U-Net decoder of paper Table I: mirrors the encoder, with deep-supervision heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rdcl.config import ModelConfig

from .blocks import ConvStage, conv_nd, transposed_conv_nd


class Decoder(nn.Module):
    """Upsample, concatenate the skip, convolve; 1x1(x1) logit heads.

    Decoder stage j (j = 0 at the bottleneck end) serves encoder stage s = n - 2 - j: a transposed
    conv with kernel = stride = ``cfg.strides[s + 1]`` maps the previous output to
    ``cfg.features[s]`` channels, the skip of stage s is concatenated, and ``convs_per_stage``
    unstrided convs with kernel ``cfg.kernels[s]`` follow (so the last stage uses stage 0's kernel,
    1x3x3 in Table I).

    Args:
        cfg: the architecture.
        skip_channels: channels of the skip tensors of encoder stages 0..n-2 (default
            ``cfg.features[:-1]``; doubled for fused multi-encoder skips).
        bottleneck_channels: channels entering the first transposed conv (default
            ``cfg.features[-1]``; 2x for the dual encoder's concatenated bottleneck).

    ``heads[k]`` is the logit head at the k-th highest resolution; heads exist for every decoder
    stage with ``cfg.deep_supervision`` (never at the bottleneck scale itself), else only
    ``heads[0]``.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        skip_channels: Sequence[int] | None = None,
        bottleneck_channels: int | None = None,
    ) -> None:
        super().__init__()
        n = len(cfg.features)
        if n < 2:
            raise ValueError(f"a U-Net needs at least 2 stages, found {n}")
        skips = tuple(cfg.features[:-1]) if skip_channels is None else tuple(skip_channels)
        if len(skips) != n - 1:
            raise ValueError(
                f"skip_channels needs {n - 1} entries (stages 0..{n - 2}), found {skips}"
            )
        channels = cfg.features[-1] if bottleneck_channels is None else bottleneck_channels
        self.deep_supervision = cfg.deep_supervision
        upsample, stages = [], []
        for s in range(n - 2, -1, -1):
            upsample.append(
                transposed_conv_nd(cfg.dim, channels, cfg.features[s], cfg.strides[s + 1])
            )
            stages.append(
                ConvStage(
                    dim=cfg.dim,
                    in_channels=cfg.features[s] + skips[s],
                    out_channels=cfg.features[s],
                    kernel=cfg.kernels[s],
                    stride=(1,) * cfg.dim,
                    num_convs=cfg.convs_per_stage,
                    eps=cfg.norm_eps,
                    negative_slope=cfg.negative_slope,
                )
            )
            channels = cfg.features[s]
        self.upsample = nn.ModuleList(upsample)
        self.stages = nn.ModuleList(stages)
        n_heads = n - 1 if cfg.deep_supervision else 1
        ones = (1,) * cfg.dim
        self.heads = nn.ModuleList(
            conv_nd(cfg.dim, cfg.features[k], cfg.num_classes, ones, ones) for k in range(n_heads)
        )

    @property
    def num_outputs(self) -> int:
        """Number of logit tensors returned in training mode."""
        return len(self.heads)

    def forward(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decode.

        Args:
            bottleneck: (B, bottleneck_channels, *spatial_{n-1}).
            skips: encoder stage outputs 0..n-2, highest resolution first, (B, skip_channels[s],
                *spatial_s).

        Returns:
            Logits (B, num_classes, *spatial_k), highest resolution first: ``num_outputs`` tensors
            in training mode with deep supervision, otherwise only the full-resolution one
            (the lower heads are not computed).
        """
        n_stages = len(self.stages)
        n_heads = len(self.heads) if self.training else 1
        outputs: list[torch.Tensor] = []
        x = bottleneck
        for j, (up, stage) in enumerate(zip(self.upsample, self.stages, strict=True)):
            x = stage(torch.cat([up(x), skips[n_stages - 1 - j]], dim=1))
            k = n_stages - 1 - j
            if k < n_heads:
                outputs.append(self.heads[k](x))
        return outputs[::-1]
