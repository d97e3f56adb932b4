"""Build the TorchScript predictor of ``rdcl export`` from an eager :class:`Predictor`.

The network is traced (``torch.jit.trace``, eval mode, one batch of tiles) and placed inside the
predictor's own pipeline (:meth:`rdcl.inference.Predictor.pipeline`, the module the eager
prediction runs), which is scripted as it is: one ScriptModule with standard ATen ops only (see
``docs/export.md``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from rdcl.errors import RdclInputError
from rdcl.formats.exported import extra_files


def trace_network(predictor: Any) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of the predictor's network on a zero batch (tile_batch, C, *patch)."""
    cfg = predictor.config
    if cfg.model.in_channels != 1:
        raise RdclInputError(
            f"export supports single-channel networks, found in_channels={cfg.model.in_channels}"
        )
    net = predictor.network.eval()
    example = torch.zeros((predictor.tile_batch, 1, *cfg.data.patch_size), device=predictor.device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(net, example, strict=False, check_trace=False)


def build_scripted(predictor: Any) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the predictor's pipeline around its traced network."""
    return torch.jit.script(predictor.pipeline(trace_network(predictor)).eval())


def save_scripted(
    module: torch.jit.ScriptModule,
    path: str | Path,
    meta: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """``torch.jit.save`` with ``rdcl.json`` and ``config.json`` as extra files (not atomic:
    the caller writes to a temp path and renames)."""
    torch.jit.save(module, str(path), _extra_files=extra_files(meta, config))
