"""Atomic PNG figures for the report (through :func:`rdcl.fsutil.atomic_write`)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from rdcl.errors import RdclInputError
from rdcl.fsutil import atomic_write

PNG_METADATA = {"Software": None}
"""No matplotlib version stamp in the PNG, so identical figures give identical bytes."""


def save_figure_atomic(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically; returns the path.

    Raises :class:`ValueError` when ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise RdclInputError(f"figures are written as PNG; expected a .png path, found {path}")
    return atomic_write(
        path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, metadata=PNG_METADATA)
    )
