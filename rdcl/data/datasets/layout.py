"""Dataset discovery: rdcl's native nnU-Net v2 raw layout and adapters for the published layouts.

Detected layouts (first match wins), for ``root``:

- ``npz``: a ``.npz`` file, or a folder of them, holding ``images`` (N, 1, H, W) and ``labels``
  (e.g. ``msd_lung_patches``); every patch is one 2D case. Images already in [0, 1] are marked
  ``window`` normalisation with window (0, 1) and ``units`` ``mapped``; the files carry no spacing
  (``rdcl prepare native --spacing`` or ``rdcl prepare msd-patches`` give them one).
- ``nnunet``: ``dataset.json`` + ``imagesTr/CASE_0000<file_ending>`` +
  ``labelsTr/CASE<file_ending>``; an optional ``"rdcl"`` block may set ``lesion``,
  ``normalization``, ``window``, ``label_map`` (raw value -> 0/1), ``units`` and ``spacing`` (for
  files that carry none). Without a ``normalization`` the images are HU and follow the run's rule
  (``data.normalization``; :mod:`rdcl.data.preprocessing.mapping`).
- ``msd``: ``dataset.json`` with a ``"training": [{"image": ..., "label": ...}]`` list
  (Task06_Lung); HU images, mapped by the run's rule.
- ``covid19_ct_seg``: the Zenodo COVID-19-CT-Seg layout: images ``coronacases_org_001.nii.gz`` /
  ``radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm.nii.gz`` in ``root`` or one sub-folder, masks
  ``coronacases_001.nii.gz`` / ``radiopaedia_4_85506_1.nii.gz`` in ``Infection_Mask/`` (1 =
  infection) or else ``Lung_and_Infection_Mask/`` (3 = infection; 1, 2 = lungs -> 0). Normalisation
  ``window``: coronacases are HU and use the window (-1250, 250); the radiopaedia volumes were
  already windowed to that range and scaled to [0, 255], so their window is (0, 255).
- ``paired``: ``images/`` + ``masks/`` (or ``labels/``) matched by name, ignoring the tokens
  im/img/image/mask/label/seg/gt (``tr_im_0001.png`` <-> ``tr_mask_0001.png``). PNG masks map
  0 -> 0 and 1, 255 -> 1 and PNG images are marked ``window`` (0, 255). Unmatched files are
  skipped with a warning.

:func:`load_case` validates everything a case can get wrong and returns labels mapped to {0, 1}.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from rdcl.data import io
from rdcl.data.datasets import published
from rdcl.data.datasets.dataset_json import check_dataset_json
from rdcl.data.datasets.spec import (
    Case,
    DatasetError,
    DatasetSpec,
    check_case_files,
    image_dim,
    path_problem,
)

__all__ = [
    "Case",
    "DatasetError",
    "DatasetSpec",
    "declared_geometry",
    "load_case",
    "load_dataset",
    "map_labels",
]

log = logging.getLogger(__name__)


def load_dataset(root: str | Path, *, split: str = "train") -> DatasetSpec:
    """Detect the layout of ``root`` and list its cases (see the module docstring).

    ``split`` is ``"train"`` (imagesTr/labelsTr, MSD ``training``) or ``"test"`` (imagesTs with
    optional labelsTs, MSD ``test``); ``.npz`` patch folders also have ``"test"`` (the files whose
    name starts with ``test``); the other published 2D/COVID layouts only ``"train"``.
    Raises :class:`DatasetError` (one line) for a missing root, an unknown layout, an empty
    dataset, a ``dataset.json`` field of the wrong type, and a case file that is missing, a
    folder, a broken link, a symbolic link loop or unreadable.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', found {split!r}")
    if not root.exists():
        problem = path_problem(root)
        if problem in (None, "nothing"):
            raise DatasetError(f"dataset not found: {root}")
        raise DatasetError(f"expected a dataset folder or file at {root}, found {problem}")
    if (root.is_file() and root.suffix == ".npz") or (root.is_dir() and published.npz_files(root)):
        layout, spec = "npz", published.npz_dataset(root, split)
    elif (root / "dataset.json").is_file():
        meta = _read_json(root / "dataset.json")
        layout = "msd" if isinstance(meta.get("training"), list) else "nnunet"
        builder = _msd_dataset if layout == "msd" else _nnunet_dataset
        return _finish(builder(root, meta, split), root)
    elif (root / "Infection_Mask").is_dir() or (root / "Lung_and_Infection_Mask").is_dir():
        layout, spec = "covid19_ct_seg", published.covid_dataset(root)
    elif (root / "images").is_dir() and published.find_mask_dir(root) is not None:
        layout, spec = "paired", published.paired_dataset(root)
    else:
        raise DatasetError(
            f"unknown dataset layout in {root}: expected dataset.json (nnU-Net/MSD), "
            "Infection_Mask/ (COVID-19-CT-Seg), images/ + masks/ or labels/, or .npz patch files"
        )
    if split != "train" and layout != "npz":
        raise DatasetError(f"the {layout} layout in {root} has only the 'train' split")
    return _finish(spec, root)


def _finish(spec: DatasetSpec, root: Path) -> DatasetSpec:
    if not spec.cases:
        raise DatasetError(f"empty dataset: no cases with images found in {root} ({spec.layout})")
    check_case_files(spec.cases)
    log.info(
        "dataset %s: %d cases, %dD, layout %s", spec.name, len(spec.cases), spec.dim, spec.layout
    )
    return spec


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DatasetError(f"cannot parse {path}: {reason}") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} must hold a JSON object, found {type(meta).__name__}")
    check_dataset_json(meta, path)
    return meta


def _nnunet_dataset(root: Path, meta: dict, split: str) -> DatasetSpec:
    ending = str(meta.get("file_ending", ".nii.gz"))
    channels = meta.get("channel_names", meta.get("modality", {"0": "CT"}))
    if len(channels) != 1:
        raise DatasetError(f"{root / 'dataset.json'}: rdcl expects 1 channel, found {channels}")
    extra = meta.get("rdcl", {}) or {}
    label_map = _label_map(meta, extra)
    window = _window(extra["window"], root / "dataset.json") if "window" in extra else None
    spacing = tuple(float(v) for v in extra["spacing"]) if "spacing" in extra else None
    img_dir, lab_dir = (
        (root / "imagesTr", root / "labelsTr")
        if split == "train"
        else (root / "imagesTs", root / "labelsTs")
    )
    if not img_dir.is_dir():
        raise DatasetError(f"empty dataset: folder {img_dir} not found")
    suffix = io.CHANNEL_SUFFIX + ending
    cases = []
    for img in sorted(p for p in img_dir.iterdir() if p.name.endswith(suffix)):
        name = img.name[: -len(suffix)]
        lab = lab_dir / (name + ending)
        if path_problem(lab) == "nothing":  # a folder, loop or unreadable file is reported later
            if split == "train":
                raise DatasetError(f"label not found for training image {img}: expected {lab}")
            lab = None
        cases.append(Case(name, img, lab, label_map, None, window, spacing))
    n = meta.get("numTraining")
    if split == "train" and cases and isinstance(n, int) and n != len(cases):
        log.warning("%s: numTraining is %d but %d cases were found", root, n, len(cases))
    dim = image_dim(cases[0].image) if cases else 3
    norm = extra.get("normalization")  # None: HU data follows the run's rule
    return DatasetSpec(
        meta.get("name", root.name),
        root,
        tuple(cases),
        dim,
        norm,
        "nnunet",
        extra.get("lesion"),
        extra.get("units", "hu"),
    )


def _window(value: object, where: Path) -> tuple[float, float]:
    """The ``"rdcl": {"window": [low, high]}`` entry of ``where``, validated."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise DatasetError(
            f"{where}: rdcl window expected (low, high) with low < high, found {value!r}"
        )
    return lo, hi


def _label_map(meta: dict, extra: dict) -> dict[int, int] | None:
    if "label_map" in extra:
        return {int(k): int(v) for k, v in extra["label_map"].items()}
    labels = meta.get("labels", {})
    values = sorted({int(v) for v in labels.values() if isinstance(v, int)})
    if len(values) == 2 and values[0] == 0 and values[1] != 1:
        return {0: 0, values[1]: 1}
    return None


def _msd_dataset(root: Path, meta: dict, split: str) -> DatasetSpec:
    entries = meta.get("training" if split == "train" else "test", [])
    cases = []
    for entry in entries:
        img_rel, lab_rel = (
            (entry.get("image"), entry.get("label")) if isinstance(entry, dict) else (entry, None)
        )
        if not isinstance(img_rel, str):
            raise DatasetError(f"{root / 'dataset.json'}: bad entry {entry!r}")
        img, lab = _listed(root, img_rel), _listed(root, lab_rel) if lab_rel else None
        for p in (img, lab):
            if p is not None and path_problem(p) == "nothing":
                raise DatasetError(f"file listed in {root / 'dataset.json'} not found: {p}")
        cases.append(Case(io.strip_suffix(img), img, lab))
    dim = image_dim(cases[0].image) if cases else 3
    return DatasetSpec(
        meta.get("name", root.name),
        root,
        tuple(cases),
        dim,
        # HU (modality CT): the run's rule, the same for every set (rdcl.data.preprocessing.mapping)
        None,
        "msd",
    )


def _listed(root: Path, rel: str) -> Path:
    """A path listed in an MSD ``dataset.json``, made absolute and normalised (``./a/../b``)
    without following symbolic links (a link loop is reported with the case files)."""
    return Path(os.path.normpath(root.absolute() / rel))


def load_case(case: Case) -> tuple[np.ndarray, np.ndarray | None, io.Geometry]:
    """Read and validate one case.

    Returns ``(image float32 (*spatial), label uint8 (*spatial) in {0, 1} or None, geometry)``
    with arrays in (z, y, x) / (y, x) order. Raises :class:`DatasetError` (one line naming the
    file) for unreadable/corrupt/4D files, NaN/inf voxels, image/label shape or geometry mismatch,
    and label values outside the case's mapping (or outside {0, 1} without one).
    """
    if case.slice_index is not None:
        images, labels = published.npz_arrays(case.image)
        where = where_image = f"{case.image}[{case.slice_index}]"
        image = images[case.slice_index, 0]
        label = labels[case.slice_index] if labels is not None else None
        geom = io.Geometry.default(image.ndim)
    else:
        where = where_image = str(case.image)
        image, geom = _read(case.image)
        label = None
        if case.label is not None:
            label, lgeom = _read(case.label)
            if label.shape != image.shape:
                raise DatasetError(
                    f"image/label shape mismatch: {case.image} is {image.shape}, "
                    f"{case.label} is {label.shape}"
                )
            if not geom.matches(lgeom, atol=1e-3):
                raise DatasetError(
                    f"image/label geometry mismatch: {case.image} {geom} vs {case.label} {lgeom}"
                )
            where = str(case.label)
    geom = declared_geometry(case, geom)
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        bad = int(np.count_nonzero(~np.isfinite(image)))
        raise DatasetError(f"{where_image}: {bad} NaN/inf voxels; expected finite intensities")
    image = np.array(image, dtype=np.float32)
    if label is not None:
        label = map_labels(label, case.label_map, where)
    return image, label, geom


def declared_geometry(case: Case, geometry: io.Geometry) -> io.Geometry:
    """``geometry`` with the case's declared spacing (:attr:`Case.spacing`, mm) when it has one.

    A declared spacing is for files that carry none (PNG, ``.npz`` patches: every voxel size 1).
    Raises :class:`DatasetError` when the file carries a real spacing that differs from it, or
    the declaration has the wrong number of axes.
    """
    if case.spacing is None:
        return geometry
    declared = tuple(float(s) for s in case.spacing)
    if len(declared) != len(geometry.spacing):
        raise DatasetError(
            f"{case.image}: declared spacing {declared} has {len(declared)} axes, the image "
            f"{len(geometry.spacing)}"
        )
    own = tuple(float(s) for s in geometry.spacing)
    if any(abs(s - 1.0) > 1e-9 for s in own) and not np.allclose(own, declared, rtol=1e-6):
        raise DatasetError(
            f"{case.image}: the file carries spacing {own} mm but the dataset declares "
            f"{declared} mm; declare a spacing only for files that carry none"
        )
    return io.Geometry(declared, geometry.origin, geometry.direction)


def _read(path: Path) -> tuple[np.ndarray, io.Geometry]:
    try:
        return io.read_image(path)
    except io.ImageReadError as exc:
        raise DatasetError(str(exc)) from exc


def map_labels(label: np.ndarray, label_map: dict[int, int] | None, where: str) -> np.ndarray:
    """Map raw label values to uint8 {0, 1} with ``label_map`` (``None``: identity on {0, 1}).

    Raises :class:`DatasetError` naming ``where`` and the values found when a value is not covered.
    """
    allowed = label_map if label_map is not None else {0: 0, 1: 1}
    if label.dtype.kind in "ub" or (label.dtype.kind == "i" and label.min() >= 0):
        counts = np.bincount(label.ravel().astype(np.int64, copy=False))
        values = np.flatnonzero(counts)
    else:
        values = np.unique(label)
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        found = [int(v) if float(v).is_integer() else float(v) for v in values.tolist()[:10]]
        raise DatasetError(
            f"{where}: label values {found} found; expected only {sorted(allowed)}"
            + (" (the documented mapping)" if label_map is not None else " (0/1)")
        )
    if label_map is None:
        return label.astype(np.uint8)
    lut = np.zeros(int(max(allowed)) + 1, dtype=np.uint8)
    for k, v in allowed.items():
        lut[int(k)] = v
    return lut[label.astype(np.int64, copy=False)]
