"""Dataset description types shared by the layout detectors: :class:`Case`, :class:`DatasetSpec`
and :class:`DatasetError`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdcl.data import io
from rdcl.data.io import path_problem
from rdcl.errors import DatasetError

__all__ = [
    "UNITS",
    "Case",
    "DatasetError",
    "DatasetSpec",
    "check_case_files",
    "image_dim",
    "path_problem",
]


@dataclass(frozen=True)
class Case:
    """One training/test case.

    ``label_map`` maps raw label values to {0, 1} (``None``: labels must already be 0/1);
    ``slice_index`` selects an entry of an ``.npz`` patch file; ``window`` is this case's intensity
    window (raw units) when its dataset uses ``window`` normalisation. ``spacing`` (mm, array
    order) is the declared voxel spacing of a file that carries none (PNG, ``.npz`` patches);
    ``None`` keeps the file's own.
    """

    name: str
    image: Path
    label: Path | None
    label_map: dict[int, int] | None = None
    slice_index: int | None = None
    window: tuple[float, float] | None = None
    spacing: tuple[float, ...] | None = None


UNITS = ("hu", "mapped")
"""Values of :attr:`DatasetSpec.units`: ``"hu"`` (Hounsfield units, mapped to the network input
by the run's rule) or ``"mapped"`` (already windowed or normalised files, e.g. PNG slices or
``.npz`` patches, whose dataset declares its own mapping)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A discovered dataset. ``normalization`` is what the data needs (``"ct"``, ``"window"``) or
    ``None`` to follow the run config; ``dim`` is 2 or 3 (spatial dimensions of one case);
    ``units`` is one of :data:`UNITS` (see :mod:`rdcl.data.preprocessing.mapping`)."""

    name: str
    root: Path
    cases: tuple[Case, ...]
    dim: int
    normalization: str | None
    layout: str = "nnunet"
    lesion: str | None = None
    units: str = "hu"


def image_dim(path: Path) -> int:
    """Spatial dimensions (2 or 3) of an image file, from its header."""
    problem = io.path_problem(path)
    if problem is not None:
        raise DatasetError(f"expected a readable image file at {path}, found {problem}")
    try:
        return len(io.read_info(path)[0])
    except io.ImageReadError as exc:
        raise DatasetError(str(exc)) from exc


def check_case_files(cases: tuple[Case, ...] | list[Case]) -> None:
    """Raise :class:`DatasetError` (one line) when an image or label file of ``cases`` is missing,
    a folder, a broken link, a symbolic link loop or unreadable."""
    seen: set[Path] = set()
    for case in cases:
        for what, path in (("image", case.image), ("label", case.label)):
            if path is None or path in seen:
                continue
            seen.add(path)
            problem = io.path_problem(path)
            if problem is not None:
                raise DatasetError(
                    f"{what} of case {case.name}: expected a readable file at {path}, "
                    f"found {problem}"
                )
