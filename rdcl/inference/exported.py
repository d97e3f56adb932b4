"""Predictors around exported files: a TorchScript predictor (``.ts``) or an AOTInductor
network (``.pt2``), both written by ``rdcl export`` (see ``docs/export.md``).

They offer the :class:`~rdcl.inference.predictor.Predictor` interface (``predict_array``,
``predict_file``, ``predict_folder``), so ``rdcl predict -m MODEL.ts`` works like a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rdcl.config import Config
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.device import resolve_device
from rdcl.errors import RdclInputError
from rdcl.formats.exported import load_package, load_torchscript
from rdcl.inference.pipeline import run_pipeline
from rdcl.inference.predictor import Predictor

TORCHSCRIPT_SUFFIXES = (".ts", ".pt")
AOTI_SUFFIXES = (".pt2",)


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported predictor file (by suffix)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in TORCHSCRIPT_SUFFIXES + AOTI_SUFFIXES


class ScriptedPredictor(Predictor):
    """The exported TorchScript predictor of a ``.ts`` file run from Python.

    Preprocessing, sliding window and threshold run inside the file (settings fixed at export);
    ``meta`` is its ``rdcl.json``. Raises ValueError for a file that is not an rdcl export.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "auto") -> None:
        dev = resolve_device(device)
        module, meta, config = load_torchscript(path, dev)
        self.meta = meta
        self.path = Path(path)
        super().__init__(module, **_predictor_settings(meta, config, dev))

    def _probabilities(
        self, image: np.ndarray, geometry: Geometry, window: tuple[float, float] | None = None
    ) -> np.ndarray:
        return run_pipeline(self.network, image, geometry.spacing, window)


def _stats(meta: dict[str, Any]) -> IntensityStats | None:
    stats = meta.get("intensity")
    return IntensityStats.from_dict(stats) if stats else None


def _predictor_settings(
    meta: dict[str, Any], config: dict[str, Any], device: torch.device
) -> dict[str, Any]:
    """``Predictor`` keyword arguments from an exported file's ``rdcl.json`` and ``config.json``."""
    return {
        "config": Config.from_dict(config),
        "intensity": _stats(meta),
        "device": device,
        "step": float(meta["step"]),
        "tile_batch": int(meta["tile_batch"]),
        "mirror": bool(meta["mirror"]),
        "normalization": meta["normalization"],
        "window": tuple(meta["training_window"]),
    }


class CompiledNetwork(nn.Module):
    """An nn.Module face for a loaded AOTInductor network (fixed batch ``tile_batch``).

    ``forward(x (B <= tile_batch, 1, *patch)) -> [logits (B, 1, *patch)]`` like rdcl networks.
    """

    def __init__(self, runner: Any, tile_batch: int) -> None:
        super().__init__()
        self.runner = runner
        self.tile_batch = tile_batch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        if b > self.tile_batch:
            raise ValueError(f"compiled for {self.tile_batch} tiles per call, found {b}")
        if b < self.tile_batch:
            pad = x.new_zeros((self.tile_batch - b, *x.shape[1:]))
            x = torch.cat([x, pad])
        out = self.runner(x.contiguous())
        first = out[0] if isinstance(out, list | tuple) else out
        return [first[:b]]


def aoti_predictor(path: str | Path, *, device: str | torch.device = "auto") -> Predictor:
    """The eager predictor around the compiled network of an ``rdcl export --format aoti``
    package (settings from its metadata)."""
    dev = resolve_device(device)
    runner, meta, config = load_package(path, dev)
    predictor = Predictor(
        CompiledNetwork(runner, int(meta["tile_batch"])), **_predictor_settings(meta, config, dev)
    )
    predictor.meta = meta  # type: ignore[attr-defined]
    return predictor


def load_exported(path: str | Path, *, device: str | torch.device = "auto") -> Predictor:
    """A predictor for an exported ``.ts`` or ``.pt2`` file (ValueError for other suffixes)."""
    suffix = Path(path).suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return ScriptedPredictor(path, device=device)
    if suffix in AOTI_SUFFIXES:
        return aoti_predictor(path, device=device)
    raise RdclInputError(f"expected an exported .ts or .pt2 file, found {path}")
