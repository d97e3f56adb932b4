"""The network part of one training step as one module, and the speed switches around it.

:class:`StepForward` runs everything a step asks of the network in one ``forward`` call, so that
DDP (which hooks ``forward`` only) and ``torch.compile`` see the whole step. With
``train.batched_general`` the dual-encoder methods run G once on [X_n, X_c] instead of twice.

The ``train.*`` speed switches (defaults and measurements: docs/architecture.md, "Training
speed"; bench/RESULTS.md):

- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` (cuDNN autotuning; CUDA only).
- ``tf32``: TF32 for fp32 convolutions and matmuls on Ampere and newer (True, PyTorch's own
  default for convolutions) or strict IEEE fp32 everywhere (False). CUDA only.
- ``channels_last``: the network and its inputs in channels-last memory format
  (``channels_last_3d`` in 3D).
- ``autocast``: ``"bf16"`` runs the forward pass under ``torch.autocast(bfloat16)``; the losses
  are computed in fp32 (they cast the logits), the weights and the optimiser stay fp32.
- ``fused_sgd``: ``torch.optim.SGD(fused=True)`` (one kernel for the whole update).
- ``compile``: ``torch.compile`` of the :class:`StepForward` module (after DDP wrapping).
- ``cuda_graphs``: the forward and backward of :class:`StepForward` captured once as CUDA graphs
  and replayed every step (:mod:`rdcl.training.graphs`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from rdcl.config import TrainConfig


class StepForward(nn.Module):
    """``forward(x_c, x_n=None) -> (logits, g_c, t_c, g_n)`` of a network (attribute ``net``).

    ``(logits, g_c, t_c)`` is ``net.forward_with_features(x_c)`` (:class:`rdcl.model.Features`):

    - single-encoder ``net``: ``(logits, None, bottleneck, None)``;
    - dual/multi-encoder, ``x_n`` None: ``(logits, G(X_c), T(X_c), None)``;
    - dual-encoder with ``x_n``: ``(logits, G(X_c), T(X_c), G(X_n))``, G run once on the
      concatenated batch when ``batched`` and the two patches have one shape
      (``DualEncoderUNet.collaborative_forward``), else twice.

    Shapes: ``x_c`` (B, C_in, *patch), ``x_n`` (B', C_in, *patch); logits a list (highest
    resolution first) of (B, classes, *spatial_k); bottlenecks (B, F, *spatial_{n-1}).
    """

    def __init__(self, net: nn.Module, *, batched: bool = True) -> None:
        super().__init__()
        self.net = net
        self.batched = batched

    def forward(
        self, x_c: torch.Tensor, x_n: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """See the class docstring."""
        same_shape = x_n is not None and x_n.shape[1:] == x_c.shape[1:]
        if same_shape and self.batched and hasattr(self.net, "collaborative_forward"):
            return self.net.collaborative_forward(x_c, x_n)
        logits, g_c, t_c = self.net.forward_with_features(x_c)
        g_n = None if x_n is None else self.net.general_features(x_n)
        return logits, g_c, t_c, g_n


def memory_format(cfg: TrainConfig, dim: int) -> torch.memory_format:
    """The memory format of the network and its inputs: channels-last (3D: ``channels_last_3d``)
    when ``cfg.channels_last``, else contiguous."""
    if not cfg.channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if dim == 3 else torch.channels_last


def apply_backend_switches(cfg: TrainConfig, device: torch.device) -> None:
    """Set the process-wide cuDNN autotune and TF32 switches for a CUDA ``device`` (no-op on the
    CPU, where neither exists)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)
    precision = "tf32" if cfg.tf32 else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: the fp32_precision API
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cuda.matmul.fp32_precision = precision
    else:  # pragma: no cover - older torch
        torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.tf32)


def prepare_network(net: nn.Module, cfg: TrainConfig, dim: int) -> nn.Module:
    """``net`` in the configured memory format (in place; returns ``net``)."""
    fmt = memory_format(cfg, dim)
    if fmt is not torch.contiguous_format:
        net.to(memory_format=fmt)
    return net


def compile_step(module: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``torch.compile(module)`` when ``cfg.compile``, else ``module``."""
    return torch.compile(module) if cfg.compile else module


@contextlib.contextmanager
def forward_precision(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Context for the forward pass: bf16 autocast when ``cfg.autocast == "bf16"``."""
    if cfg.autocast == "bf16":
        # CUDA graphs need autocast's cast cache off (make_graphed_callables refuses it).
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not cfg.cuda_graphs):
            yield
    else:
        yield


def to_device(
    x: torch.Tensor, device: torch.device, fmt: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """``x`` on ``device`` (asynchronous from pinned memory) in memory format ``fmt``."""
    x = x.to(device, non_blocking=True)
    return x if fmt is torch.contiguous_format else x.contiguous(memory_format=fmt)
