"""A seeded multi-worker DataLoader over training steps.

The loader is map-style over step indices with ``batch_size=None``: item ``k`` is
``sampler.batch(start_step + k)``, already a whole batch. Since every batch is a pure function of
``(seed, step)``, the batches are identical for any ``num_workers``, and the DataLoader returns them
in step order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from rdcl.data.sampler import PatchSampler


class StepDataset(Dataset):
    """``ds[k] = sampler.batch(start_step + k)`` for ``k`` in ``range(stop_step - start_step)``."""

    def __init__(self, sampler: PatchSampler, start_step: int, stop_step: int) -> None:
        if stop_step < start_step:
            raise ValueError(f"stop_step ({stop_step}) must be >= start_step ({start_step})")
        self.sampler = sampler
        self.start_step = int(start_step)
        self.stop_step = int(stop_step)

    def __len__(self) -> int:
        return self.stop_step - self.start_step

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not 0 <= k < len(self):
            raise IndexError(f"step index {k} out of range for {len(self)} steps")
        return self.sampler.batch(self.start_step + k)


def _worker_init(_: int) -> None:
    # Workers each compute whole batches; one intra-op thread per worker avoids oversubscription.
    torch.set_num_threads(1)


def make_loader(
    sampler: PatchSampler,
    start_step: int,
    stop_step: int,
    num_workers: int = 0,
    *,
    pin_memory: bool | None = None,
    prefetch: int = 2,
) -> Iterable[dict[str, Any]]:
    """Batches for steps ``start_step .. stop_step - 1``, in order (see the module docstring).

    With ``num_workers > 0`` each worker process computes whole batches (patch extraction and
    augmentation, from the memory-mapped cache) and keeps ``prefetch`` batches ready; the
    DataLoader's own generator is seeded with ``sampler.seed`` (it draws nothing that affects the
    batches). ``pin_memory`` (default: when CUDA is available) returns page-locked tensors, so
    ``tensor.to("cuda", non_blocking=True)`` copies asynchronously.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, found {num_workers}")
    if prefetch < 1:
        raise ValueError(f"prefetch must be >= 1, found {prefetch}")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra: dict[str, Any] = {"pin_memory": bool(pin_memory)}
    if num_workers > 0:
        extra.update(worker_init_fn=_worker_init, prefetch_factor=int(prefetch))
    return DataLoader(
        StepDataset(sampler, start_step, stop_step),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(sampler.seed),
        **extra,
    )
