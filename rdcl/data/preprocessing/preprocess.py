"""Preprocessing of whole cases and the array cache that training reads.

:func:`preprocess_case` normalises (see :mod:`rdcl.data.preprocessing.intensity`;
``DataConfig.normalization``, or the dataset's own when its layout records one, e.g.
already-windowed PNGs) and then resamples to ``DataConfig.target_spacing`` (see
:mod:`rdcl.data.preprocessing.resample`), as nnU-Net does; :func:`restore` maps network outputs back
to the original grid. :func:`preprocess_dataset` writes the cache once and :class:`CachedDataset`
reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from rdcl.config import DataConfig
from rdcl.data.datasets.layout import Case, DatasetError, DatasetSpec, load_case
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.intensity import IntensityStats, compute_intensity_stats, normalize
from rdcl.data.preprocessing.resample import resample_image, resample_label, target_shape
from rdcl.data.preprocessing.spacing import dataset_target_spacing
from rdcl.formats.cache import (
    ARRAYS,
    CACHE_FORMAT,
    STATS_NAME,
    array_name,
    case_file_name,
    case_name,
    read_cache,
    reusable_manifest,
    write_json,
    write_manifest,
)
from rdcl.fsutil import atomic_write

__all__ = [
    "CachedDataset",
    "IntensityStats",
    "compute_intensity_stats",
    "normalize",
    "preprocess_case",
    "preprocess_dataset",
    "restore",
]

log = logging.getLogger(__name__)


def preprocess_case(
    image: np.ndarray,
    geometry: Geometry,
    data_cfg: DataConfig,
    stats: IntensityStats | None,
    label: np.ndarray | None = None,
    *,
    normalization: str | None = None,
    window: tuple[float, float] | None = None,
    label_mode: str = "linear",
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Normalise and resample one case.

    ``image``/``label``: (*spatial) arrays in raw units / {0, 1}. ``normalization`` and ``window``
    override ``data_cfg.normalization`` / ``data_cfg.window`` (the dataset's own settings).
    Returns ``(image float32 (1, *spatial'), label uint8 (*spatial') | None, props)``, where
    ``props`` (JSON-serialisable) holds ``shape``, ``spacing``, ``resampled_shape``,
    ``resampled_spacing`` and ``geometry``, everything :func:`restore` needs.
    ``data_cfg.target_spacing`` ``"auto"`` that was never resolved against a training set
    (:func:`rdcl.data.preprocessing.spacing.dataset_target_spacing`) keeps the case's own grid.
    """
    norm = normalization or data_cfg.normalization
    x = normalize(image, norm, stats=stats, window=window or data_cfg.window)
    target = None if data_cfg.target_spacing == "auto" else data_cfg.target_spacing
    shape = target_shape(image.shape, geometry.spacing, target)
    x = resample_image(x, shape)
    y = resample_label(label, shape, mode=label_mode) if label is not None else None
    props = {
        "shape": list(image.shape),
        "spacing": list(geometry.spacing),
        "resampled_shape": list(shape),
        "resampled_spacing": [
            s * o / n for s, o, n in zip(geometry.spacing, image.shape, shape, strict=True)
        ],
        "geometry": {k: list(v) for k, v in asdict(geometry).items()},
        "normalization": norm,
    }
    return x[None], y, props


def restore(prob_or_mask: np.ndarray, props: dict[str, Any]) -> np.ndarray:
    """Resample a network output back to the case's original shape.

    ``prob_or_mask``: ``(*resampled)`` or ``(K, *resampled)``. Integer/bool masks are resampled
    with linear interpolation thresholded at 0.5 (uint8 out); float arrays (probabilities,
    logits) linearly (float32 out). Identity when no resampling happened.
    """
    shape = tuple(props["shape"])
    arr = np.asarray(prob_or_mask)
    spatial = arr.shape[-len(shape) :]
    if tuple(spatial) != tuple(props["resampled_shape"]):
        raise ValueError(
            f"array spatial shape {tuple(spatial)} does not match the preprocessed shape "
            f"{tuple(props['resampled_shape'])}"
        )
    if arr.ndim == len(shape) + 1:
        return np.stack([restore(a, props) for a in arr])
    if arr.dtype.kind in "biu":
        return resample_label(arr, shape)
    return resample_image(arr, shape, order=1)


_FG_SAMPLES = 10_000


def _case_fingerprint(case: Case) -> list[Any]:
    files = [p for p in (case.image, case.label) if p is not None]
    stamps = []
    for p in files:
        st = Path(p).stat()
        stamps.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    lm = sorted(case.label_map.items()) if case.label_map else None
    return [case.name, stamps, lm, case.slice_index, case.window]


def _fingerprint(spec: DatasetSpec, data_cfg: DataConfig, stats: IntensityStats | None) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "cases": [_case_fingerprint(c) for c in spec.cases],
        "normalization": spec.normalization or data_cfg.normalization,
        "window": list(data_cfg.window),
        "target_spacing": list(data_cfg.target_spacing) if data_cfg.target_spacing else None,
        "stats": stats.to_dict() if stats else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def preprocess_dataset(
    spec: DatasetSpec,
    data_cfg: DataConfig,
    cache_dir: str | Path,
    stats: IntensityStats | None = None,
) -> CachedDataset:
    """Preprocess every case of ``spec`` into ``cache_dir`` and return the cached dataset.

    Writes ``<case>.image.npy`` (float32 (1, *spatial)) and ``<case>.label.npy`` (uint8
    (*spatial), when the case has one), uncompressed so that training memory-maps them, and
    ``<case>.npz`` (``fg`` int32 (K, dim) foreground voxel coordinates (a seeded subsample of at
    most 10,000), ``props`` JSON), then ``stats.json`` and last ``manifest.json``, each atomically.
    The dataset's own normalisation and per-case windows take precedence over ``data_cfg``.
    ``stats`` (for ``"ct"``) default to :func:`compute_intensity_stats` over this dataset; for the
    other schemes they are computed for the record only. When ``manifest.json`` already holds the
    same fingerprint (input files' paths, sizes and mtimes, settings, given stats), nothing is
    re-read and the cache is reused. ``data_cfg.target_spacing`` ``"auto"`` is resolved over this
    dataset's cases (:func:`rdcl.data.preprocessing.spacing.dataset_target_spacing`); training
    resolves it over the COVID set before and passes the value, so every dataset of a run shares it.
    """
    cache_dir = Path(cache_dir)
    if data_cfg.target_spacing == "auto":
        resolved = dataset_target_spacing([spec], spec.dim)
        data_cfg = replace(data_cfg, target_spacing=resolved)
    key = _fingerprint(spec, data_cfg, stats)
    old = reusable_manifest(cache_dir, key)
    if old is not None:
        log.info("reusing preprocessed cache %s (%d cases)", cache_dir, len(old["files"]))
        return CachedDataset(cache_dir)
    names = [c.name for c in spec.cases]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"{spec.root}: duplicate case names {dup[:5]}")
    norm = spec.normalization or data_cfg.normalization
    if stats is None and norm == "ct":
        stats = compute_intensity_stats(load_case(c)[:2] for c in spec.cases)
    cache_dir.mkdir(parents=True, exist_ok=True)
    collected: list[tuple[np.ndarray, np.ndarray | None]] = []
    files: list[str] = []
    arrays: list[str] = []
    for i, case in enumerate(spec.cases):
        image, label, geom = load_case(case)
        if stats is None:
            collected.append(_stats_sample(image, label, i))
        x, y, props = preprocess_case(
            image, geom, data_cfg, stats, label, normalization=norm, window=case.window
        )
        meta = {"props": np.array(json.dumps(props))}
        for name, arr in (("image", x), ("label", y)):
            if arr is not None:
                npy = array_name(case.name, name)
                atomic_write(cache_dir / npy, lambda f, a=arr: np.save(f, np.ascontiguousarray(a)))
                arrays.append(npy)
        if y is not None:
            meta["fg"] = _foreground_sample(y, seed=i)
        fname = case_file_name(case.name)
        atomic_write(cache_dir / fname, lambda f, a=meta: np.savez(f, **a))
        files.append(fname)
    if stats is None:
        stats = compute_intensity_stats(collected)
    windows = {tuple(c.window or data_cfg.window) for c in spec.cases}
    info = {
        "intensity": stats.to_dict(),
        "normalization": norm,
        "units": spec.units,
        "window": list(windows.pop()) if norm == "window" and len(windows) == 1 else None,
        "target_spacing": list(data_cfg.target_spacing) if data_cfg.target_spacing else None,
        "dataset": {
            "name": spec.name,
            "dim": spec.dim,
            "layout": spec.layout,
            "lesion": spec.lesion,
            "root": str(spec.root),
        },
    }
    write_json(cache_dir / STATS_NAME, info)
    write_manifest(cache_dir, key, files, arrays)
    log.info("preprocessed %d cases of %s into %s", len(files), spec.name, cache_dir)
    return CachedDataset(cache_dir)


def _stats_sample(image: np.ndarray, label: np.ndarray | None, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    flat = image.ravel()
    if flat.size <= 100_000:
        return image, label
    idx = rng.choice(flat.size, 100_000, replace=False)
    return flat[idx], None if label is None else label.ravel()[idx]


def _foreground_sample(label: np.ndarray, *, seed: int) -> np.ndarray:
    coords = np.argwhere(label > 0).astype(np.int32)
    if len(coords) > _FG_SAMPLES:
        rng = np.random.default_rng(seed)
        coords = coords[np.sort(rng.choice(len(coords), _FG_SAMPLES, replace=False))]
    return coords


class CachedDataset:
    """Preprocessed cases read from a cache written by :func:`preprocess_dataset`.

    ``dataset[i] -> (image float32 (1, *spatial), label uint8 (*spatial) | None)``. Image and
    label are read-only memory maps of the cache's ``.npy`` files (format 2): pages are read
    when a patch touches them and the OS page cache shares them between DataLoader workers and
    DDP ranks. The small per-case entries are kept after their first read when ``in_memory``
    (the default). Attributes: ``names``,
    ``dim``, ``stats`` (:class:`IntensityStats`), ``normalization``, ``window`` (the intensity
    window shared by all cases for ``"window"`` normalisation, ``None`` otherwise or when the
    cases differ, as in COVID-19-CT-Seg), ``info`` (stats.json).
    """

    def __init__(self, cache_dir: str | Path, *, in_memory: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        manifest, self.info = read_cache(self.cache_dir)
        self.files = [self.cache_dir / f for f in manifest["files"]]
        self.names = [case_name(f.name) for f in self.files]
        self.stats = IntensityStats.from_dict(self.info["intensity"])
        self.normalization = self.info["normalization"]
        window = self.info.get("window")
        self.window = (float(window[0]), float(window[1])) if window else None
        self.dim = int(self.info["dataset"]["dim"])
        self.in_memory = in_memory
        self._memo: dict[int, dict[str, Any]] = {}

    @classmethod
    def load(cls, cache_dir: str | Path, *, in_memory: bool = True) -> CachedDataset:
        """Open an existing cache (raises :class:`DatasetError` when there is none)."""
        return cls(cache_dir, in_memory=in_memory)

    def __len__(self) -> int:
        return len(self.files)

    def _arrays(self, i: int) -> dict[str, Any]:
        if i in self._memo:
            return self._memo[i]
        if not 0 <= i < len(self.files):
            raise IndexError(f"case index {i} out of range for {len(self.files)} cases")
        try:
            with np.load(self.files[i]) as z:
                arrays = {k: z[k] for k in z.files}
            for name in ARRAYS:
                npy = self.files[i].with_name(array_name(self.names[i], name))
                if name == "image" or npy.is_file():
                    arrays[name] = np.load(npy, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read cached case {self.files[i]}: {exc}") from exc
        arrays["props"] = json.loads(str(arrays["props"]))
        if self.in_memory:
            self._memo[i] = arrays
        return arrays

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        a = self._arrays(i)
        return a["image"], a.get("label")

    def foreground(self, i: int) -> np.ndarray:
        """Foreground voxel coordinates of case ``i``, int32 (K, spatial dims); K may be 0."""
        a = self._arrays(i)
        return a.get("fg", np.zeros((0, a["image"].ndim - 1), np.int32))

    def props(self, i: int) -> dict[str, Any]:
        """The :func:`preprocess_case` ``props`` of case ``i`` (for :func:`restore`)."""
        return self._arrays(i)["props"]
