"""What training needs from ``rdcl.data``: cached datasets, per-step batch streams, and the
dataset entries of a checkpoint.

Datasets may be given as a folder (any layout ``rdcl.data.load_dataset`` detects), a
``DatasetSpec`` or an already preprocessed ``CachedDataset``; folders and specs are preprocessed
into ``cache_dir/<name>-<hash of the root>`` (reused while the inputs and settings are unchanged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from rdcl.config import Config, DataConfig
from rdcl.data import DatasetSpec, PatchSampler, load_dataset, make_loader, preprocess_dataset
from rdcl.data.preprocessing.spacing import dataset_target_spacing

if TYPE_CHECKING:
    from rdcl.data.preprocessing.intensity import IntensityStats
    from rdcl.data.preprocessing.preprocess import CachedDataset

logger = logging.getLogger(__name__)

DatasetInput: TypeAlias = "str | Path | DatasetSpec | CachedDataset"
"""A dataset as the training functions take it: a folder (any layout
:func:`rdcl.data.load_dataset` detects), a listed :class:`~rdcl.data.DatasetSpec`, or an already
preprocessed :class:`~rdcl.data.CachedDataset`."""


def as_list(
    datasets: DatasetInput | Sequence[DatasetInput] | None,
) -> list[DatasetInput]:
    """``None`` -> [], a list/tuple -> a list, anything else -> [it]."""
    if datasets is None:
        return []
    return list(datasets) if isinstance(datasets, (list, tuple)) else [datasets]


def resolve_target_spacing(cfg: Config, datasets: DatasetInput | Sequence[DatasetInput]) -> Config:
    """``cfg`` with ``data.target_spacing`` ``"auto"`` replaced by nnU-Net's rule over the cases of
    ``datasets`` (:func:`rdcl.data.preprocessing.spacing.dataset_target_spacing`, headers only); an
    already preprocessed ``CachedDataset`` contributes the spacing it was cached at. Other values
    are kept. The resolved config is what the run saves, so prediction resamples to the same grid.
    """
    if cfg.data.target_spacing != "auto":
        return cfg

    specs = []
    for d in as_list(datasets):
        d = load_dataset(d) if isinstance(d, (str, Path)) else d
        if not isinstance(d, DatasetSpec):  # a cache: its grid is fixed already
            cached = d.info.get("target_spacing")
            spacing = tuple(float(s) for s in cached) if cached else None
            return cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=spacing))
        specs.append(d)
    spacing = dataset_target_spacing(specs, cfg.model.dim)
    logger.info("data.target_spacing auto -> %s mm (nnU-Net's rule over %s)", spacing,
                ", ".join(s.name for s in specs))  # fmt: skip
    return cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=spacing))


def as_cached(
    dataset: DatasetInput,
    data_cfg: DataConfig,
    cache_dir: Path,
    stats: IntensityStats | None = None,
) -> CachedDataset:
    """A ``CachedDataset`` for ``dataset`` (a folder, a ``DatasetSpec`` or a cached dataset);
    ``stats``: the run's pooled ``ct`` statistics
    (:func:`rdcl.data.preprocessing.mapping.pooled_stats`), used for HU sets instead of the set's
    own.

    Raises:
        rdcl.data.DatasetError: the folder is no readable dataset.
    """
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(dataset)
    if not isinstance(dataset, DatasetSpec):
        return dataset
    root = str(Path(dataset.root).resolve())
    key = hashlib.sha1(root.encode()).hexdigest()[:8]
    own = stats if dataset.units == "hu" else None
    cached = preprocess_dataset(dataset, data_cfg, Path(cache_dir) / f"{dataset.name}-{key}", own)
    cached.info[IDENTITY_KEY] = source_identity(dataset)
    return cached


class MixedSampler:
    """Round-robin over several samplers: step t takes ``samplers[t % k].batch(t)``.

    Mixes several non-COVID sets (tumours, effusions, nodules) with equal weight; still a pure
    function of (seeds, step). ``seed`` is the first sampler's (``rdcl.data.make_loader`` seeds
    its DataLoader generator with it).
    """

    def __init__(self, samplers: Sequence[PatchSampler]) -> None:
        if not samplers:
            raise ValueError("need at least one sampler")
        self.samplers = list(samplers)
        self.seed = int(self.samplers[0].seed)

    def batch(self, step: int, indices: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """The batch of step ``step`` (see ``rdcl.data.PatchSampler.batch``; ``indices`` selects
        samples of it)."""
        sampler = self.samplers[step % len(self.samplers)]
        return sampler.batch(step) if indices is None else sampler.batch(step, indices)

    @property
    def batch_size(self) -> int:
        """The (global) batch size of the first sampler."""
        return int(self.samplers[0].batch_size)


def make_sampler(
    datasets: CachedDataset | Sequence[CachedDataset], data_cfg: DataConfig, *, seed: int
) -> PatchSampler | MixedSampler:
    """A ``PatchSampler`` over one cached dataset, or a :class:`MixedSampler` over several
    (dataset i seeded with ``seed + i``)."""
    datasets = as_list(datasets)
    if len(datasets) == 1:
        return PatchSampler(datasets[0], data_cfg, seed=seed)
    return MixedSampler([PatchSampler(d, data_cfg, seed=seed + i) for i, d in enumerate(datasets)])


def batch_stream(
    sampler: PatchSampler | MixedSampler,
    start: int,
    stop: int,
    num_workers: int,
    thread: bool = False,
) -> Iterable[dict]:
    """Batches of steps start .. stop-1 in order (``rdcl.data.make_loader``; ``thread``: computed
    ahead by a background thread, ``data.loader_thread``)."""
    return make_loader(sampler, start, stop, num_workers, thread=thread)


IDENTITY_KEY = "identity"
"""Key of a cached dataset's ``info`` under which :func:`as_cached` records its source files."""


def source_identity(spec: DatasetSpec) -> dict[str, Any]:
    """What identifies a dataset's inputs: name, resolved root, and per case its name and each
    file's resolved path, size (bytes) and mtime (ns). Plain data (stored in checkpoints)."""
    cases = []
    for case in spec.cases:
        stamps = []
        for p in (case.image, case.label):
            if p is not None:
                st = Path(p).stat()
                stamps.append([str(Path(p).resolve()), int(st.st_size), int(st.st_mtime_ns)])
        cases.append([str(case.name), stamps])
    return {"name": str(spec.name), "root": str(Path(spec.root).resolve()), "cases": cases}


def identity_of(dataset: CachedDataset) -> dict[str, Any]:
    """The recorded :func:`source_identity` of a cached dataset; for a cache given directly
    (no source record) its folder and case names."""
    info = getattr(dataset, "info", None) or {}
    if IDENTITY_KEY in info:
        return info[IDENTITY_KEY]
    cache = getattr(dataset, "cache_dir", None)
    return {
        "name": str(info.get("dataset", {}).get("name", "")),
        "root": str(Path(cache).resolve()) if cache is not None else None,
        "cases": [[str(n), []] for n in getattr(dataset, "names", [])],
    }


def data_differences(saved: list[dict], current: list[dict], *, limit: int = 3) -> list[str]:
    """Human-readable differences between two lists of :func:`source_identity` records
    (empty when they are the same data)."""
    if len(saved) != len(current):
        return [f"{len(saved)} dataset(s) in the run, {len(current)} given"]
    out: list[str] = []
    for i, (old, new) in enumerate(zip(saved, current, strict=True)):
        tag = f"dataset {i + 1} ({new.get('name')})"
        if old.get("root") != new.get("root"):
            out.append(f"{tag}: folder {old.get('root')} in the run, {new.get('root')} given")
            continue
        old_cases = {c[0]: c[1] for c in old.get("cases", [])}
        new_cases = {c[0]: c[1] for c in new.get("cases", [])}
        missing = sorted(set(old_cases) - set(new_cases))
        added = sorted(set(new_cases) - set(old_cases))
        if missing:
            out.append(f"{tag}: cases {missing[:limit]} of the run are gone")
        if added:
            out.append(f"{tag}: cases {added[:limit]} are new")
        for name in sorted(set(old_cases) & set(new_cases)):
            if old_cases[name] != new_cases[name]:
                old_f = {s[0]: s[1:] for s in old_cases[name]}
                changed = [p for p, st in ((s[0], s[1:]) for s in new_cases[name])
                           if old_f.get(p) != st] or [name]  # fmt: skip
                out.append(f"{tag}: case {name!r} changed ({changed[0]}: size or mtime differs)")
                if len(out) >= limit:
                    break
    return out[:limit]


def dataset_meta(
    dataset: CachedDataset | Sequence[CachedDataset], extra: Sequence[CachedDataset] = ()
) -> dict[str, Any]:
    """Checkpoint entries ``intensity`` and ``dataset`` of a cached dataset (the first of a list):
    what the predictor needs to preprocess new images the same way; and ``data``, the
    :func:`identity_of` every dataset the stage reads (``dataset`` and ``extra``), which a
    resume must match."""
    datasets = [*as_list(dataset), *extra]
    ds = datasets[0]
    return {
        "data": [identity_of(d) for d in datasets],
        "intensity": ds.stats.to_dict(),
        "dataset": {
            "name": str(ds.info["dataset"]["name"]),
            "dim": int(ds.dim),
            "normalization": ds.normalization,
            "window": list(ds.window) if ds.window is not None else None,
        },
    }
