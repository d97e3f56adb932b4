"""Intensity normalisation: foreground statistics of a training set and the three schemes.

- ``"ct"`` (nnU-Net CT scheme): clip to the 0.5/99.5 percentiles of the training set's foreground
  voxels, then ``(x - mean) / max(std, 1e-8)`` with the foreground mean/std (of the unclipped
  foreground voxels), all from :func:`compute_intensity_stats`.
- ``"window"``: ``(clip(x, lo, hi) - lo) / (hi - lo)``, mapping the window to [0, 1].
- ``"zscore"``: per image, ``(x - mean(x)) / max(std(x), 1e-8)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rdcl.config import NORMALIZATIONS, alternatives
from rdcl.errors import RdclInputError

EPS = 1e-8


@dataclass(frozen=True)
class IntensityStats:
    """Foreground intensity statistics of a training set (raw units, e.g. HU).

    ``lo``/``hi`` are the 0.5/99.5 percentiles; ``mean``/``std`` describe the same voxels.
    """

    mean: float
    std: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "intensity statistics") -> IntensityStats:
        """Inverse of :meth:`to_dict`. Raises ValueError (one line starting with ``where``) unless
        ``d`` holds finite numbers ``mean``, ``std`` >= 0, ``lo`` <= ``hi``."""
        keys = ("mean", "std", "lo", "hi")
        values: dict[str, float] = {}
        if isinstance(d, dict):
            for k in keys:
                v = d.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    values[k] = float(v)
        if len(values) < len(keys) or values["std"] < 0 or values["lo"] > values["hi"]:
            found = repr(d) if len(repr(d)) <= 120 else repr(d)[:117] + "..."
            raise RdclInputError(
                f"{where}: expected finite numbers mean, std >= 0, lo <= hi, found {found}"
            )
        return cls(**values)


def compute_intensity_stats(
    pairs: Iterable[tuple[np.ndarray, np.ndarray | None]],
    *,
    max_voxels_per_case: int = 100_000,
    seed: int = 0,
) -> IntensityStats:
    """Statistics of the foreground (``label > 0``) voxels over ``(image, label)`` pairs.

    Each case contributes at most ``max_voxels_per_case`` voxels (a seeded uniform subsample, as
    nnU-Net does); cases without a label or without foreground contribute nothing. When no case
    has foreground, every voxel is used instead. Percentiles use linear interpolation
    (``np.percentile``); ``std`` is the population standard deviation (ddof=0).
    """
    rng = np.random.default_rng(seed)

    def subsample(v: np.ndarray) -> np.ndarray:
        return v if v.size <= max_voxels_per_case else rng.choice(v, max_voxels_per_case, False)

    fg: list[np.ndarray] = []
    every: list[np.ndarray] = []
    for image, label in pairs:
        image = np.asarray(image, dtype=np.float64).ravel()
        if label is not None:
            fg.append(subsample(image[np.asarray(label).ravel() > 0]))
        every.append(subsample(image))
    values = np.concatenate(fg) if any(v.size for v in fg) else np.concatenate([[], *every])
    if values.size == 0:
        raise RdclInputError("cannot compute intensity statistics: no voxels were given")
    lo, hi = np.percentile(values, [0.5, 99.5])
    return IntensityStats(float(values.mean()), float(values.std()), float(lo), float(hi))


def normalize(
    image: np.ndarray,
    normalization: str,
    *,
    stats: IntensityStats | None = None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Normalise intensities (see the module docstring); returns float32 of the same shape.

    ``stats`` is required for ``"ct"`` and ``window`` for ``"window"``.
    """
    x = np.asarray(image, dtype=np.float32)
    if normalization == "ct":
        if stats is None:
            raise RdclInputError("normalization 'ct' needs IntensityStats; none were given")
        x = np.clip(x, stats.lo, stats.hi)
        return ((x - stats.mean) / max(stats.std, EPS)).astype(np.float32)
    if normalization == "window":
        if window is None:
            raise RdclInputError(
                "normalization 'window' needs a (low, high) window; none was given"
            )
        lo, hi = float(window[0]), float(window[1])
        if not lo < hi:
            raise RdclInputError(
                f"window expected (low, high) with low < high, found {tuple(window)}"
            )
        return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    if normalization == "zscore":
        return ((x - x.mean()) / max(float(x.std()), EPS)).astype(np.float32)
    raise RdclInputError(
        f"normalization must be {alternatives(NORMALIZATIONS)}, found {normalization!r}"
    )
