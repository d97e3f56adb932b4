"""``train.cuda_graphs``: the network part of the training step captured once as CUDA graphs.

:func:`graph_step` hands :class:`~rdcl.training.step.StepForward` to
``torch.cuda.make_graphed_callables``: a few warm-up iterations on a side stream, then one
capture of the forward and one of the backward, for static zero inputs of the step's fixed shape
(:func:`static_inputs`). Every step copies its batch into those buffers and replays the two
graphs; the losses, the step's one host transfer of the logged terms (the divergence guard,
``rdcl.training.loop``) and the optimiser step stay eager. The relation kernels belong to the
losses, so they are not captured (their launches refuse capture: per-call pointer tables).

``make_graphed_callables`` takes and returns tensors only, and counts ``None`` as an argument;
:class:`StepForward` returns ``None`` for the features a network or a call lacks (G of a single
encoder, G(X_n) without X_n). :class:`TensorStep` is the tensor-only view that is captured;
:class:`GraphedStep` restores ``StepForward``'s call and return structure around it.

One CUDA device and one rank for now (:func:`check_cuda_graphs`); not with ``train.compile``
(``rdcl.config.TrainConfig``).
"""

from __future__ import annotations

import torch
from torch import nn

from rdcl.config import Config, ConfigError, TrainConfig

from .step import forward_precision, memory_format


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


class TensorStep(nn.Module):
    """A :class:`StepForward` with tensor-only inputs and outputs: ``forward(*xs) -> (*logits,
    *features)`` for ``xs`` = ``(x_c,)`` or ``(x_c, x_n)``, the ``None`` features left out.

    Which features are ``None`` and how many logits there are is fixed by the network and the
    number of inputs; every call records it (``n_logits``, ``present``) for :class:`GraphedStep`.
    """

    def __init__(self, step: nn.Module) -> None:
        super().__init__()
        self.step = step
        self.n_logits = 0
        self.present: tuple[bool, ...] = ()

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """See the class docstring."""
        logits, *features = self.step(*xs)
        self.n_logits = len(logits)
        self.present = tuple(f is not None for f in features)
        return (*logits, *(f for f in features if f is not None))


class GraphedStep(nn.Module):
    """``forward(x_c, x_n=None) -> (logits, g_c, t_c, g_n)`` as :class:`StepForward`, around a
    (captured) :class:`TensorStep` ``inner`` taking ``inputs`` tensors."""

    def __init__(self, inner: TensorStep, inputs: int) -> None:
        super().__init__()
        self.inner = inner
        self.inputs = inputs

    def forward(
        self, x_c: torch.Tensor, x_n: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """See :class:`StepForward`; the call must pass as many inputs as were captured."""
        xs = (x_c,) if x_n is None else (x_c, x_n)
        if len(xs) != self.inputs:
            raise RuntimeError(
                f"the CUDA-graph step was captured for {self.inputs} input(s), called with "
                f"{len(xs)}"
            )
        out = self.inner(*xs)
        n = self.inner.n_logits
        rest = iter(out[n:])
        g_c, t_c, g_n = (next(rest) if p else None for p in self.inner.present)
        return list(out[:n]), g_c, t_c, g_n


def graph_step(
    module: nn.Module, cfg: Config, device: torch.device, *, batch: int, inputs: int
) -> nn.Module:
    """``module`` (a :class:`StepForward`) with its training-mode forward and backward captured
    as CUDA graphs (a :class:`GraphedStep`) when ``cfg.train.cuda_graphs``, else ``module``.

    The graphs are captured for ``inputs`` network inputs (1: ``x_c``; 2: ``x_c, x_n``) of shape
    :func:`static_inputs` with ``batch`` samples each (the per-rank batch), under the step's
    autocast setting (with autocast's cast cache off, as capture requires). The warm-up computes
    gradients with ``torch.autograd.grad``, so no ``.grad`` is touched and nothing the run
    computes changes. Call it after :func:`check_cuda_graphs` and before DDP wrapping. A network
    part that synchronised with the host could not be captured (CUDA refuses it);
    ``tests/training/test_step_sync.py`` checks that the step has no such synchronisation.
    """
    if not cfg.train.cuda_graphs:
        return module
    inner = TensorStep(module).train()
    sample = static_inputs(cfg, batch, inputs, device)
    with forward_precision(cfg.train, device):
        graphed = torch.cuda.make_graphed_callables(inner, sample, allow_unused_input=True)
    return GraphedStep(graphed, inputs)
