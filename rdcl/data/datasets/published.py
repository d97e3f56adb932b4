"""Adapters for the published dataset layouts (see :mod:`rdcl.data.datasets.layout` for the list):
COVID-19-CT-Seg (Zenodo), paired ``images/`` + ``masks/`` folders, and ``.npz`` patch files."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from rdcl.config import LUNG_WINDOW
from rdcl.data import io
from rdcl.data.datasets.spec import Case, DatasetError, DatasetSpec, image_dim

log = logging.getLogger(__name__)

CORONACASES_WINDOW = LUNG_WINDOW
RADIOPAEDIA_WINDOW = (0.0, 255.0)
PNG_WINDOW = (0.0, 255.0)
_PNG_LABEL_MAP = {0: 0, 1: 1, 255: 1}
_NAME_TOKENS = {"im", "img", "image", "images", "mask", "masks", "label", "labels", "seg", "gt"}


def covid_dataset(root: Path) -> DatasetSpec:
    """COVID-19-CT-Seg: images ``*_org_*`` in ``root`` or a sub-folder; masks in
    ``Infection_Mask/`` (preferred) or ``Lung_and_Infection_Mask/`` (3 -> 1, lungs -> 0)."""
    if (root / "Infection_Mask").is_dir():
        mask_dir, label_map = root / "Infection_Mask", None
    else:
        mask_dir, label_map = root / "Lung_and_Infection_Mask", {0: 0, 1: 0, 2: 0, 3: 1}
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir() and "Mask" not in p.name)]
    cases = []
    for folder in folders:
        for img in sorted(folder.iterdir()):
            name = _covid_mask_name(io.strip_suffix(img))
            if name is None or not io.is_image_file(img):
                continue
            masks = [m for m in mask_dir.glob(name + ".*") if io.strip_suffix(m) == name]
            if not masks:
                log.warning("skipping %s: no mask %s.* in %s", img, name, mask_dir)
                continue
            window = RADIOPAEDIA_WINDOW if name.startswith("radiopaedia") else CORONACASES_WINDOW
            cases.append(Case(name, img, masks[0], label_map, None, window))
    return DatasetSpec(
        "COVID-19-CT-Seg", root, tuple(cases), 3, "window", "covid19_ct_seg", "covid"
    )


def _covid_mask_name(stem: str) -> str | None:
    m = re.fullmatch(r"coronacases_org_(\d+)", stem)
    if m:
        return f"coronacases_{m.group(1)}"
    m = re.fullmatch(r"radiopaedia_org_covid-19-pneumonia-(.+?)-dcm", stem)
    return f"radiopaedia_{m.group(1)}" if m else None


def find_mask_dir(root: Path) -> Path | None:
    """``root/masks`` or ``root/labels``, whichever exists first; ``None`` when neither does."""
    return next((root / d for d in ("masks", "labels") if (root / d).is_dir()), None)


def _match_key(path: Path) -> str:
    tokens = re.split(r"[_\-.\s]+", io.strip_suffix(path).lower())
    return "_".join(t for t in tokens if t and t not in _NAME_TOKENS)


def paired_dataset(root: Path) -> DatasetSpec:
    """``images/`` + ``masks/``|``labels/`` matched by name without the im/mask/label tokens."""
    mask_dir = find_mask_dir(root)
    images = sorted(p for p in (root / "images").iterdir() if io.is_image_file(p))
    masks = sorted(p for p in mask_dir.iterdir() if io.is_image_file(p))
    by_key: dict[str, Path] = {}
    for m in masks:
        key = _match_key(m)
        if key in by_key:
            raise DatasetError(f"masks {by_key[key]} and {m} match the same image name")
        by_key[key] = m
    cases, used = [], set()
    for img in images:
        mask = by_key.get(_match_key(img))
        if mask is None:
            log.warning("skipping image %s: no mask with a matching name in %s", img, mask_dir)
            continue
        used.add(mask)
        is_png = img.name.lower().endswith(".png")
        cases.append(
            Case(
                io.strip_suffix(img),
                img,
                mask,
                _PNG_LABEL_MAP if mask.name.lower().endswith(".png") else None,
                None,
                PNG_WINDOW if is_png else None,
            )
        )
    for m in masks:
        if m not in used:
            log.warning("skipping mask %s: no image with a matching name in %s", m, root / "images")
    dim = image_dim(cases[0].image) if cases else 2
    norm = "window" if cases and cases[0].window is not None else None
    units = "mapped" if norm == "window" else "hu"  # PNG: already windowed, no HU
    return DatasetSpec(root.name, root, tuple(cases), dim, norm, "paired", None, units)


def npz_files(root: Path) -> list[Path]:
    """The ``.npz`` files directly in ``root`` (hidden files ignored), sorted."""
    return sorted(p for p in root.glob("*.npz") if not p.name.startswith("."))


def npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(images (N, 1, *spatial), labels (N, *spatial) | None)`` of a patch file (cached)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DatasetError(f"patch file not found: {path}") from exc
    return __npz_arrays_cached(path, mtime)


@lru_cache(maxsize=8)
def __npz_arrays_cached(path: Path, mtime_ns: int) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path) as z:
            if "images" not in z:
                raise DatasetError(f"{path}: expected an array 'images', found {sorted(z.files)}")
            images = z["images"]
            labels = z["labels"] if "labels" in z else None
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read patch file {path}: {exc}") from exc
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim not in (4, 5) or images.shape[1] != 1:
        raise DatasetError(
            f"{path}: expected images (N, 1, H, W) or (N, 1, D, H, W), found {images.shape}"
        )
    if labels is not None:
        if labels.ndim == images.ndim and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape[0] != images.shape[0] or labels.shape[1:] != images.shape[2:]:
            raise DatasetError(
                f"{path}: image/label shape mismatch, images {images.shape} labels {labels.shape}"
            )
    return images, labels


def npz_split_files(root: Path, split: str) -> list[Path]:
    """The ``.npz`` files of ``root`` that belong to ``split``.

    In a folder, files whose name starts with ``test`` (e.g. msd_lung_patches' ``test_patches.npz``)
    are held out: ``split="train"`` takes the others (all files when every one is a test file),
    ``split="test"`` takes only those. A single file is always used as given.
    """
    if root.is_file():
        return [root]
    files = npz_files(root)
    held_out = [f for f in files if f.name.lower().startswith("test")]
    if split == "test":
        return held_out
    return [f for f in files if f not in held_out] or files


def npz_dataset(root: Path, split: str = "train") -> DatasetSpec:
    """One 2D (or 3D) case per patch of an ``.npz`` file or of the folder's files of ``split``
    (:func:`npz_split_files`)."""
    files = npz_split_files(root, split)
    cases, in_unit = [], True
    dim = 2
    for f in files:
        images, labels = npz_arrays(f)
        dim = images.ndim - 2
        finite = images[np.isfinite(images)]
        in_unit = in_unit and finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
        stem = f.stem
        for i in range(images.shape[0]):
            cases.append(Case(f"{stem}_{i:04d}", f, f if labels is not None else None, None, i))
    if in_unit:
        cases = [Case(c.name, c.image, c.label, None, c.slice_index, (0.0, 1.0)) for c in cases]
    name = root.stem if root.is_file() else root.name
    norm = "window" if in_unit else None
    return DatasetSpec(name, root, tuple(cases), dim, norm, "npz", None, "mapped")
