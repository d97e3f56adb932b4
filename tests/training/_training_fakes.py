"""Helpers for the training tests: a tiny 2D config and seeded stand-in data streams.

The stand-in sampler is, like ``rdcl.data.PatchSampler``, a pure function of (seed, step): a smooth
random image whose bright blobs are the label. The stand-in datasets carry the attributes
``stats``, ``dim``, ``normalization``, ``window`` and ``info`` that training reads from a
``CachedDataset``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from rdcl.config import Config, preset
from rdcl.data.preprocessing.preprocess import IntensityStats


class FakeSampler:
    """Seeded (seed, step) -> batch of (B, 1, *patch) images and {0, 1} labels."""

    def __init__(self, seed: int, data_cfg) -> None:
        self.seed = seed
        self.batch_size = data_cfg.batch_size
        self.patch = tuple(data_cfg.patch_size)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        noise = torch.randn((self.batch_size, 1, *self.patch), generator=g)
        image = F.avg_pool2d(noise, 5, stride=1, padding=2) * 3.0
        return {"image": image, "label": (image > 0.8).float()}


def fake_dataset(name: str):
    """Stand-in for a ``CachedDataset`` (only the attributes training reads)."""
    return SimpleNamespace(
        stats=IntensityStats(mean=0.0, std=1.0, lo=-3.0, hi=3.0),
        dim=2,
        normalization="window",
        window=(0.0, 255.0),
        info={"dataset": {"name": name, "dim": 2}},
    )


def tiny_cfg(method: str = "rdcl", **train) -> Config:
    """tiny2d with a 32x32 patch, batch 2, CPU, a few steps."""
    cfg = preset("tiny2d")
    data = dataclasses.replace(cfg.data, patch_size=(32, 32), batch_size=2, num_workers=0)
    settings = dict(
        method=method,
        pretrain_steps=2,
        steps=4,
        rampup_steps=2,
        checkpoint_every=2,
        device="cpu",
        seed=3,
    )
    settings.update(train)
    return cfg.replace(data=data, train=dataclasses.replace(cfg.train, **settings))


def state_of(path) -> dict[str, torch.Tensor]:
    """The model state dict stored in a checkpoint."""
    from rdcl.formats.checkpoint import load_checkpoint

    return load_checkpoint(path)["model"]
