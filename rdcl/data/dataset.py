"""Dataset description types shared by the layout detectors: :class:`Case`, :class:`DatasetSpec`
and :class:`DatasetError`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdcl.data import io


class DatasetError(ValueError):
    """A dataset folder or one of its cases is invalid (one-line message naming the file)."""


@dataclass(frozen=True)
class Case:
    """One training/test case.

    ``label_map`` maps raw label values to {0, 1} (``None``: labels must already be 0/1);
    ``slice_index`` selects an entry of an ``.npz`` patch file; ``window`` is this case's intensity
    window (raw units) when its dataset uses ``window`` normalisation.
    """

    name: str
    image: Path
    label: Path | None
    label_map: dict[int, int] | None = None
    slice_index: int | None = None
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A discovered dataset. ``normalization`` is what the data needs (``"ct"``, ``"window"``) or
    ``None`` to follow the run config; ``dim`` is 2 or 3 (spatial dimensions of one case)."""

    name: str
    root: Path
    cases: tuple[Case, ...]
    dim: int
    normalization: str | None
    layout: str = "nnunet"
    lesion: str | None = None


def image_dim(path: Path) -> int:
    """Spatial dimensions (2 or 3) of an image file, from its header."""
    try:
        return len(io.read_info(path)[0])
    except io.ImageReadError as exc:
        raise DatasetError(str(exc)) from exc
