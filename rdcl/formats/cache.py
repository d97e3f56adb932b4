"""The preprocessing cache folder (format ``rdcl-cache/2``): the names of its files and its
``manifest.json``, written last by :func:`rdcl.data.preprocessing.preprocess.preprocess_dataset` and
read first by :class:`rdcl.data.preprocessing.preprocess.CachedDataset`.

Layout (docs/architecture.md, "Preprocessing cache")::

    CACHE_DIR/<case>.image.npy    float32 (1, *spatial), uncompressed (memory-mappable)
    CACHE_DIR/<case>.label.npy    uint8 (*spatial)
    CACHE_DIR/<case>.npz          fg: int32 (K, dim) foreground coordinates, props: JSON
    CACHE_DIR/stats.json          intensity statistics, dataset name/dim/normalisation/window
    CACHE_DIR/manifest.json       {"format", "fingerprint", "files", "arrays"}, written last

Every file is written atomically (:func:`rdcl.fsutil.atomic_write`); a cache is complete once its
manifest exists, and reused while the manifest's fingerprint matches and its files exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rdcl.errors import DatasetError
from rdcl.fsutil import atomic_write

CACHE_FORMAT = "rdcl-cache/2"
"""Version 2 stores each case's image and label as uncompressed ``.npy`` files (memory-mapped by
:class:`~rdcl.data.preprocessing.preprocess.CachedDataset`). A version 1 cache (everything in one
``<case>.npz``) is no longer read: :func:`~rdcl.data.preprocessing.preprocess.preprocess_dataset`
rebuilds it (its fingerprint differs), :class:`~rdcl.data.preprocessing.preprocess.CachedDataset`
refuses it with a line saying so."""

ARRAYS = ("image", "label")
"""Arrays stored as ``<case>.<name>.npy`` (memory-mappable) rather than in ``<case>.npz``."""

MANIFEST_NAME = "manifest.json"
"""The cache's manifest, written last."""

STATS_NAME = "stats.json"
"""The cache's intensity statistics and dataset record."""


def array_name(case: str, name: str) -> str:
    """File name of a case's memory-mappable array ``name`` (one of :data:`ARRAYS`)."""
    return f"{case}.{name}.npy"


def case_file_name(case: str) -> str:
    """File name of a case's small entries (``fg``, ``props``)."""
    return f"{case}.npz"


def case_name(file_name: str) -> str:
    """The case name of a :func:`case_file_name`."""
    return file_name[: -len(".npz")]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def write_manifest(cache_dir: Path, fingerprint: str, files: list[str], arrays: list[str]) -> None:
    """Write ``manifest.json``: the last file of a complete cache."""
    manifest = {
        "format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "files": files,
        "arrays": arrays,
    }
    write_json(cache_dir / MANIFEST_NAME, manifest)


def reusable_manifest(cache_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The manifest of ``cache_dir`` when it holds ``fingerprint`` and every file it lists
    exists (the cache can be reused as it is); else None (no, an unreadable or another cache)."""
    path = cache_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:
        old = {}
    listed = [*old.get("files", []), *old.get("arrays", [])]
    if old.get("fingerprint") == fingerprint and all((cache_dir / f).is_file() for f in listed):
        return old
    return None


def read_cache(cache_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest, stats.json)`` of a complete cache of this format.

    Raises:
        DatasetError: no readable manifest or stats file, or a cache of another format.
    """
    try:
        manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
        info = json.loads((cache_dir / STATS_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"no valid preprocessed cache in {cache_dir} (run preprocessing): {exc}"
        ) from exc
    if manifest.get("format") != CACHE_FORMAT:
        raise DatasetError(
            f"{cache_dir}: cache format {manifest.get('format')!r}, expected "
            f"{CACHE_FORMAT!r} (a cache of an older rdcl: preprocess the dataset again, "
            "which rebuilds it)"
        )
    return manifest, info
