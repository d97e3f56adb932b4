"""What training needs from ``rdcl.data``: cached datasets, per-step batch streams, and the
dataset entries of a checkpoint.

Datasets may be given as a folder (any layout ``rdcl.data.load_dataset`` detects), a
``DatasetSpec`` or an already preprocessed ``CachedDataset``; folders and specs are preprocessed
into ``cache_dir/<name>-<hash of the root>`` (reused while the inputs and settings are unchanged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from rdcl.config import DataConfig


def as_list(datasets: Any) -> list[Any]:
    """``None`` -> [], a list/tuple -> a list, anything else -> [it]."""
    if datasets is None:
        return []
    return list(datasets) if isinstance(datasets, (list, tuple)) else [datasets]


def as_cached(dataset: Any, data_cfg: DataConfig, cache_dir: Path) -> Any:
    """A ``CachedDataset`` for ``dataset`` (a folder, a ``DatasetSpec`` or a cached dataset).

    Raises:
        rdcl.data.DatasetError: the folder is no readable dataset.
    """
    from rdcl.data import DatasetSpec, load_dataset, preprocess_dataset

    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(dataset)
    if not isinstance(dataset, DatasetSpec):
        return dataset
    root = str(Path(dataset.root).resolve())
    key = hashlib.sha1(root.encode()).hexdigest()[:8]
    return preprocess_dataset(dataset, data_cfg, Path(cache_dir) / f"{dataset.name}-{key}")


class MixedSampler:
    """Round-robin over several samplers: step t takes ``samplers[t % k].batch(t)``.

    Mixes several non-COVID sets (tumours, effusions, nodules) with equal weight; still a pure
    function of (seeds, step). ``seed`` is the first sampler's (``rdcl.data.make_loader`` seeds
    its DataLoader generator with it).
    """

    def __init__(self, samplers: Sequence[Any]) -> None:
        if not samplers:
            raise ValueError("need at least one sampler")
        self.samplers = list(samplers)
        self.seed = int(self.samplers[0].seed)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of step ``step`` (see ``rdcl.data.PatchSampler.batch``)."""
        return self.samplers[step % len(self.samplers)].batch(step)


def make_sampler(datasets: Any, data_cfg: DataConfig, *, seed: int) -> Any:
    """A ``PatchSampler`` over one cached dataset, or a :class:`MixedSampler` over several
    (dataset i seeded with ``seed + i``)."""
    from rdcl.data import PatchSampler

    datasets = as_list(datasets)
    if len(datasets) == 1:
        return PatchSampler(datasets[0], data_cfg, seed=seed)
    return MixedSampler([PatchSampler(d, data_cfg, seed=seed + i) for i, d in enumerate(datasets)])


def batch_stream(sampler: Any, start: int, stop: int, num_workers: int) -> Iterable[dict]:
    """Batches of steps start .. stop-1 in order (``rdcl.data.make_loader``)."""
    from rdcl.data import make_loader

    return make_loader(sampler, start, stop, num_workers)


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """Checkpoint entries ``intensity`` and ``dataset`` of a cached dataset (the first of a list):
    what the predictor needs to preprocess new images the same way."""
    ds = as_list(dataset)[0]
    return {
        "intensity": ds.stats.to_dict(),
        "dataset": {
            "name": str(ds.info["dataset"]["name"]),
            "dim": int(ds.dim),
            "normalization": ds.normalization,
            "window": list(ds.window) if ds.window is not None else None,
        },
    }
