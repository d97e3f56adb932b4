"""Atomic file writing for the report (temp file in the target folder + ``os.replace``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

from rdcl.data.io import new_file_mode

PNG_METADATA = {"Software": None}
"""No matplotlib version stamp in the PNG, so identical figures give identical bytes."""


def _temp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        new_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_figure_atomic(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically; returns the path.

    Raises :class:`ValueError` when ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG; expected a .png path, found {path}")
    tmp = _temp_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=PNG_METADATA)
        new_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
