"""Shared builders for the export tests: tiny networks, predictors and checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from rdcl.config import Config, preset
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.formats.checkpoint import FORMAT, save_checkpoint
from rdcl.inference import Predictor
from rdcl.model import build_network

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
STATS = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)


def config(name: str, **data: object) -> Config:
    """A preset with ``data`` fields replaced (patch_size, target_spacing, normalization, ...)."""
    cfg = preset(name)
    return cfg.replace(data=dataclasses.replace(cfg.data, **data))


def network(cfg: Config, kind: str = "single", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(cfg.model, kind=kind)


def predictor(cfg: Config, kind: str = "single", **options: object) -> Predictor:
    options.setdefault("device", "cpu")
    return Predictor(network(cfg, kind), config=cfg, intensity=STATS, **options)


def save_ckpt(path: Path, cfg: Config, kind: str = "single", dataset: dict | None = None) -> Path:
    net = network(cfg, kind)
    save_checkpoint(
        path,
        {
            "format": FORMAT, "config": cfg.to_dict(), "kind": kind, "stage": "train",
            "step": 0, "model": net.state_dict(), "optimizer": None, "rng": None,
            "intensity": STATS.to_dict(),
            "dataset": {"name": "t", "dim": cfg.model.dim, **(dataset or {})},
        },
    )  # fmt: skip
    return path


def phantom(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int = 0):
    """``(image int16 HU, lung uint8, geometry)`` of a synthetic chest CT with COVID lesions."""
    from rdcl.data.synth import synthesize_phantom

    ph = synthesize_phantom("covid", shape, spacing, np.random.default_rng(seed))
    origin = tuple(float(i) * 3.5 - 7.0 for i in range(len(shape)))
    geom = Geometry.default(len(shape), spacing)
    geom = Geometry(geom.spacing, origin, geom.direction)
    return ph.image, ph.lung, geom


def run_ts(module: torch.jit.ScriptModule, image: np.ndarray, spacing, method: str = "forward"):
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    sp = torch.tensor(spacing, dtype=torch.float64)
    return getattr(module, method)(x, sp).numpy()
