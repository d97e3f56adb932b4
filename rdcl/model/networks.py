"""The three networks of the compared methods and their builder.

- :class:`SingleEncoderUNet`: one encoder + decoder (the ``baseline``/``pretrain`` methods and the
  stage-1 pre-training of G).
- :class:`DualEncoderUNet`: paper Table I: general encoder G, target encoder T of identical
  architecture and one shared decoder D. D receives the concatenated bottlenecks [G, T]
  (2x channels, G's entering DETACHED so the segmentation loss never updates G) and skips from T
  only.
- :class:`MultiEncoderUNet`: the multi-encoder baseline of Wang et al. (see its docstring for the
  interpretation).

Every network maps (B, in_channels, *spatial) to a list of logits, highest resolution first; the
spatial size must be a multiple of the total stride (``ModelConfig.total_stride()``).
``forward_with_features`` returns the same :class:`Features` for every network.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rdcl.config import ModelConfig

from .blocks import init_weights
from .decoder import Decoder
from .encoder import Encoder

KINDS = ("single", "dual", "multi_encoder")
"""Values of ``build_network(kind=...)``."""


class Features(NamedTuple):
    """What every network's ``forward_with_features(x)`` returns, for x (B, in_channels, *spatial).

    - ``logits``: list of (B, num_classes, *spatial_k), highest resolution first (as ``forward``).
    - ``general``: G's bottleneck (B, features[-1], *spatial_{n-1}); None for a single-encoder
      network, which has no G (not detached in :class:`DualEncoderUNet`, detached in the frozen
      :class:`MultiEncoderUNet`).
    - ``target``: the bottleneck (B, features[-1], *spatial_{n-1}) of the encoder that the
      segmentation loss trains and whose skips feed the decoder: T of the dual and multi-encoder
      networks, the one encoder of :class:`SingleEncoderUNet`. Not detached.
    """

    logits: list[torch.Tensor]
    general: torch.Tensor | None
    target: torch.Tensor


def _check_input(x: torch.Tensor, cfg: ModelConfig) -> None:
    """Raise ValueError on a wrong rank/channel count or a size that is not a stride multiple.

    Skipped while tracing: Python checks on sizes would be frozen into the trace as constants.
    """
    if torch.jit.is_tracing():
        return
    if x.dim() != cfg.dim + 2 or x.shape[1] != cfg.in_channels:
        axes = "z, y, x" if cfg.dim == 3 else "y, x"
        raise ValueError(
            f"network input must be (B, {cfg.in_channels}, {axes}), found shape {tuple(x.shape)}"
        )
    total = cfg.total_stride()
    spatial = tuple(int(s) for s in x.shape[2:])
    if any(s % t for s, t in zip(spatial, total, strict=True)):
        raise ValueError(
            f"input spatial size {spatial} must be a multiple of the total stride {total}"
        )


class SingleEncoderUNet(nn.Module):
    """Encoder + decoder (attributes ``encoder``, ``decoder``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.apply(init_weights)

    def forward_with_features(self, x: torch.Tensor) -> Features:
        """:class:`Features` ``(logits, None, the encoder's bottleneck)``."""
        _check_input(x, self.cfg)
        features = self.encoder(x)
        return Features(self.decoder(features[-1], features[:-1]), None, features[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, num_classes, *spatial_k), highest resolution first (1 tensor in eval())."""
        return self.forward_with_features(x).logits


class DualEncoderUNet(nn.Module):
    """Table I: G and T of identical architecture, shared decoder D (``general``, ``target``,
    ``decoder``).

    Gradient routing (Algorithm 1): G's bottleneck enters D through ``detach()``, so a loss on the
    logits reaches T and D only; the bottlenecks returned by :meth:`forward_with_features` are not
    detached, so relation losses on them reach their own encoder.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.general = Encoder(cfg)
        self.target = Encoder(cfg)
        self.decoder = Decoder(cfg, bottleneck_channels=2 * cfg.features[-1])
        self.apply(init_weights)

    def general_features(self, x: torch.Tensor) -> torch.Tensor:
        """G's bottleneck (B, features[-1], *spatial_{n-1}) with gradient (for L_G on X_n)."""
        _check_input(x, self.cfg)
        return self.general(x)[-1]

    def forward_with_features(self, x: torch.Tensor) -> Features:
        """:class:`Features` ``(logits, G bottleneck, T bottleneck)``, neither detached."""
        _check_input(x, self.cfg)
        g_bottleneck = self.general(x)[-1]
        t_features = self.target(x)
        t_bottleneck = t_features[-1]
        fused = torch.cat([g_bottleneck.detach(), t_bottleneck], dim=1)
        return Features(self.decoder(fused, t_features[:-1]), g_bottleneck, t_bottleneck)

    def collaborative_forward(
        self, x_c: torch.Tensor, x_n: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's network work with G run ONCE on the concatenated batch [X_n, X_c].

        Equal to ``(*forward_with_features(x_c), general_features(x_n))`` up to floating-point
        summation order (InstanceNorm normalises each sample alone, so batching changes nothing
        else); one G call instead of two halves G's kernel launches.

        Args:
            x_c: COVID batch (B, in_channels, *spatial); x_n: non-COVID batch (B', same *spatial).

        Returns:
            ``(logits, G(X_c) bottleneck, T(X_c) bottleneck, G(X_n) bottleneck)``, none detached
            (G's enters D detached, as in :meth:`forward_with_features`).
        """
        _check_input(x_c, self.cfg)
        _check_input(x_n, self.cfg)
        g_n, g_c = self.general(torch.cat([x_n, x_c]))[-1].split([x_n.shape[0], x_c.shape[0]])
        t_features = self.target(x_c)
        fused = torch.cat([g_c.detach(), t_features[-1]], dim=1)
        return self.decoder(fused, t_features[:-1]), g_c, t_features[-1], g_n

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, num_classes, *spatial_k), highest resolution first (1 tensor in eval())."""
        return self.forward_with_features(x).logits


class MultiEncoderUNet(nn.Module):
    """Multi-encoder baseline (Wang et al., as compared in the paper's Tables II/III).

    Interpretation: a pre-trained encoder (``general``, load it with
    :func:`rdcl.model.load_general_encoder`) is FROZEN (``requires_grad=False`` from construction,
    its outputs detached) and a fresh encoder of the same architecture (``target``) runs beside it.
    Their features are fused by channel concatenation [G, T] at every scale: every skip and the
    bottleneck enter the decoder with 2x channels. Only ``target`` and ``decoder`` train. There are
    no relation losses for this method; the bottlenecks are returned for analysis only.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.general = Encoder(cfg)
        self.target = Encoder(cfg)
        self.decoder = Decoder(
            cfg,
            skip_channels=[2 * f for f in cfg.features[:-1]],
            bottleneck_channels=2 * cfg.features[-1],
        )
        self.apply(init_weights)
        self.general.requires_grad_(False)

    def general_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's bottleneck (B, features[-1], *spatial_{n-1}), detached."""
        _check_input(x, self.cfg)
        return self.general(x)[-1].detach()

    def forward_with_features(self, x: torch.Tensor) -> Features:
        """:class:`Features` ``(logits, G bottleneck (detached), T bottleneck)``."""
        _check_input(x, self.cfg)
        g_features = [f.detach() for f in self.general(x)]
        t_features = self.target(x)
        fused = [torch.cat([g, t], dim=1) for g, t in zip(g_features, t_features, strict=True)]
        return Features(self.decoder(fused[-1], fused[:-1]), g_features[-1], t_features[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, num_classes, *spatial_k), highest resolution first (1 tensor in eval())."""
        return self.forward_with_features(x).logits


def build_network(cfg: ModelConfig, *, kind: str) -> nn.Module:
    """Build a freshly initialised network.

    Args:
        cfg: architecture (``rdcl.config.ModelConfig``; the default is paper Table I).
        kind: ``"single"``, ``"dual"`` or ``"multi_encoder"``.

    Raises:
        ValueError: unknown ``kind`` (``cfg`` was checked when it was constructed).
    """
    classes = {
        "single": SingleEncoderUNet,
        "dual": DualEncoderUNet,
        "multi_encoder": MultiEncoderUNet,
    }
    if kind not in classes:
        raise ValueError(f"kind must be one of {KINDS}, found {kind!r}")
    return classes[kind](cfg)
