"""A seeded multi-worker DataLoader over training steps.

The loader is map-style over step indices with ``batch_size=None``: item ``k`` is
``sampler.batch(start_step + k)``, already a whole batch. Since every batch is a pure function of
``(seed, step)``, the batches are identical for any ``num_workers``, and the DataLoader returns them
in step order. With ``thread=True`` (and no worker processes) the batches are computed ahead by
one background thread of the training process instead: no inter-process copies, which is what
``data.augment_on: device`` wants (its batches are plain crops, mostly memory copies that release
the GIL).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from rdcl.data.sampling.sampler import PatchSampler


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


class ThreadPrefetcher:
    """Iterate ``source`` in a daemon thread, ``prefetch`` items ahead, in order.

    An exception raised by ``source`` is raised by the consumer's ``next`` (after the items
    before it); a consumer that stops early (``break``, an exception, garbage collection) stops
    the thread before the generator returns.
    """

    _END = object()

    def __init__(self, source: Iterable[Any], prefetch: int = 2) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, found {prefetch}")
        self.source = source
        self.prefetch = int(prefetch)

    def __iter__(self) -> Iterator[Any]:
        items: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def offer(item: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in self.source:
                    if not offer((True, item)):
                        return
                offer((False, self._END))
            except BaseException as exc:  # handed to the consumer
                offer((False, exc))

        thread = threading.Thread(target=produce, name="rdcl-loader", daemon=True)
        thread.start()
        try:
            while True:
                ok, item = items.get()
                if ok:
                    yield item
                elif item is self._END:
                    return
                else:
                    raise item
        finally:
            stop.set()
            thread.join()


def make_loader(
    sampler: PatchSampler,
    start_step: int,
    stop_step: int,
    num_workers: int = 0,
    *,
    pin_memory: bool | None = None,
    prefetch: int = 2,
    thread: bool = False,
) -> Iterable[dict[str, Any]]:
    """Batches for steps ``start_step .. stop_step - 1``, in order (see the module docstring).

    With ``num_workers > 0`` each worker process computes whole batches (patch extraction and
    augmentation, from the memory-mapped cache) and keeps ``prefetch`` batches ready; the
    DataLoader's own generator is seeded with ``sampler.seed`` (it draws nothing that affects the
    batches). With ``thread=True`` (``num_workers`` must be 0) one background thread computes
    ``prefetch`` batches ahead (:class:`ThreadPrefetcher`). ``pin_memory`` (default: when CUDA is
    available) returns page-locked tensors, so ``tensor.to("cuda", non_blocking=True)`` copies
    asynchronously.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, found {num_workers}")
    if prefetch < 1:
        raise ValueError(f"prefetch must be >= 1, found {prefetch}")
    if thread and num_workers > 0:
        raise ValueError(
            f"a loader thread computes batches in this process; expected num_workers 0 with "
            f"thread=True, found {num_workers}"
        )
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra: dict[str, Any] = {"pin_memory": bool(pin_memory)}
    if num_workers > 0:
        extra.update(worker_init_fn=_worker_init, prefetch_factor=int(prefetch))
    loader = DataLoader(
        StepDataset(sampler, start_step, stop_step),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(sampler.seed),
        **extra,
    )
    return ThreadPrefetcher(loader, prefetch) if thread else loader
