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
  (``torch.cuda.make_graphed_callables``, static input buffers of the step's fixed shape) and
  replayed every step; the losses, the one host transfer of the logged terms (the divergence
  guard) and the optimiser step stay eager. One CUDA device, one rank, not with ``compile``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from rdcl.config import Config, ConfigError, TrainConfig


class StepForward(nn.Module):
    """``forward(x_c, x_n=None) -> (logits, g_c, t_c, g_n)`` of a network (attribute ``net``).

    - single-encoder ``net``: ``(logits, bottleneck, None, None)``;
    - dual/multi-encoder, ``x_n`` None: ``(logits, G(X_c), T(X_c), None)``;
    - dual-encoder with ``x_n``: ``(logits, G(X_c), T(X_c), G(X_n))``, G run once on the
      concatenated batch when ``batched`` (``DualEncoderUNet.collaborative_forward``), else twice.

    Shapes: ``x_c`` (B, C_in, *patch), ``x_n`` (B', C_in, *patch); logits a list (highest
    resolution first) of (B, classes, *spatial_k); bottlenecks (B, F, *spatial_{n-1}).
    """

    def __init__(self, net: nn.Module, *, batched: bool = True) -> None:
        super().__init__()
        self.net = net
        self.batched = batched

    def forward(
        self, x_c: torch.Tensor, x_n: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """See the class docstring."""
        if x_n is not None and self.batched and hasattr(self.net, "collaborative_forward"):
            return self.net.collaborative_forward(x_c, x_n)
        logits, *bottlenecks = self.net.forward_with_features(x_c)
        g_c = bottlenecks[0]
        t_c = bottlenecks[1] if len(bottlenecks) > 1 else None
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


def check_cuda_graphs(cfg: TrainConfig, device: torch.device, world_size: int) -> None:
    """Raise :class:`ConfigError` when ``cfg.cuda_graphs`` is on but cannot run: the resolved
    ``device`` is not CUDA (``train.device auto`` on a machine without one) or the run has
    several ranks (DDP around a captured step is not supported yet)."""
    if not cfg.cuda_graphs:
        return
    if device.type != "cuda":
        raise ConfigError(
            f"train.cuda_graphs needs a CUDA device, found {device} (train.device "
            f"{cfg.device!r}); turn train.cuda_graphs off on this machine"
        )
    if world_size > 1:
        raise ConfigError(
            f"train.cuda_graphs runs one rank only for now, found a world size of {world_size}; "
            "turn train.cuda_graphs off for DDP runs"
        )


def static_inputs(
    cfg: Config, batch: int, count: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """``count`` zero tensors shaped like the step's network inputs, ``(batch,
    model.in_channels, *data.patch_size)`` float32 on ``device`` in the configured memory format:
    the sample inputs of a CUDA-graph capture (every training batch has this shape)."""
    fmt = memory_format(cfg.train, cfg.model.dim)
    shape = (batch, cfg.model.in_channels, *cfg.data.patch_size)
    return tuple(
        torch.zeros(shape, device=device).contiguous(memory_format=fmt) for _ in range(count)
    )


def graph_step(
    module: nn.Module, cfg: Config, device: torch.device, *, batch: int, inputs: int
) -> nn.Module:
    """``module`` (a :class:`StepForward`) with its training-mode forward and backward captured
    as CUDA graphs when ``cfg.train.cuda_graphs``, else ``module`` unchanged.

    The graphs are captured for ``inputs`` network inputs (1: ``x_c``; 2: ``x_c, x_n``) of shape
    :func:`static_inputs` with ``batch`` samples each (the per-rank batch); every step copies its
    batch into those static buffers and replays. The capture (``torch.cuda.make_graphed_callables``:
    a few warm-up iterations on a side stream, then one capture each of forward and backward)
    runs under the step's autocast setting; its warm-up computes gradients with
    ``torch.autograd.grad``, so no ``.grad`` is touched. Call it after :func:`check_cuda_graphs`
    and before DDP wrapping. A network part that synchronises with the host cannot be captured
    (CUDA refuses it), which is why the step keeps its one host transfer outside the module
    (``rdcl.training.loop``).
    """
    if not cfg.train.cuda_graphs:
        return module
    sample = static_inputs(cfg, batch, inputs, device)
    module.train()
    with forward_precision(cfg.train, device):
        return torch.cuda.make_graphed_callables(module, sample, allow_unused_input=True)


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
