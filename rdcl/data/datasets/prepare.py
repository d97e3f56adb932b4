"""Convert the paper's data sets from their published layouts into rdcl's native layout
(nnU-Net v2 raw: ``dataset.json``, ``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz`` 0/1),
and unpack downloaded archives safely.

- ``covid19-ct-seg`` (Zenodo 3757476): images ``coronacases_org_001.nii.gz`` /
  ``radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm.nii.gz``, masks in ``Infection_Mask/``
  (1 = infection) or ``Lung_and_Infection_Mask/`` (3 = infection, 1/2 = lungs -> 0), read with
  :func:`rdcl.data.datasets.published.covid_dataset`. Cases are named by their masks
  (``coronacases_001``, ``radiopaedia_4_85506_1``: the names of the official Task-1 split). The two
  intensity conventions are made one: the 10 radiopaedia volumes, already windowed to
  [-1250, 250] HU and scaled to [0, 255], are mapped back to that HU range
  (``v / 255 * 1500 - 1250``), so every case is HU with the window (-1250, 250).
- ``msd-lung`` (MSD Task06_Lung): ``dataset.json`` + ``imagesTr/lung_001.nii.gz`` (the tar's
  ``._*`` resource-fork files are ignored: only ``dataset.json``'s list is read); HU images, labels
  0/1.
- ``nsclc-effusion`` (PleThora effusion masks on NSCLC-Radiomics CT): masks
  ``<patient>*effusion*.nii.gz`` anywhere under the source (several reviewers: the first by
  name), images ``<patient>.nii.gz`` (or ``.nii``/``.nrrd``/``.mha``) or a DICOM series folder
  named ``<patient>``; patients are ``LUNG1-NNN``. Masks 0/1 or 0/255; patients without an image
  are skipped with a warning. (This layout is our reading of the TCIA release; adjust
  :data:`NSCLC_PATIENT` if your copy differs.)

Every prepared HU set is marked with the same intensity mapping, the lung window (-1250, 250) HU
(:mod:`rdcl.data.preprocessing.mapping`: G must see one mapping in both stages).

- ``native`` (:func:`prepare_native`): any layout rdcl reads, e.g. PNG slices or ``.npz`` patches
  whose files carry no spacing, written as NIfTI with a declared ``spacing`` and the set's own
  mapping (``msd-patches``: ``msd_lung_patches``, 2D patches of MSD Task06_Lung resampled to
  2 mm, so 2 x 2 mm).

Images and labels are written through :mod:`rdcl.data.io`, so spacing, origin and direction are
kept; the output folder appears only when complete.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rdcl.data import io
from rdcl.data.datasets import published
from rdcl.data.datasets.layout import load_dataset
from rdcl.data.datasets.native import as_int16, native_meta, write_native
from rdcl.data.datasets.slices import prepare_slices
from rdcl.data.datasets.spec import Case, DatasetError, DatasetSpec
from rdcl.errors import RdclInputError

logger = logging.getLogger(__name__)

HU_WINDOW = published.CORONACASES_WINDOW
"""The COVID-19-CT-Seg window (-1250, 250) HU; radiopaedia's [0, 255] maps onto it."""

NSCLC_PATIENT = re.compile(r"(LUNG1-\d{3})", re.IGNORECASE)
"""Patient identifier in NSCLC-Radiomics / PleThora file names."""

NSCLC_LABEL_MAP = {0: 0, 1: 1, 255: 1}
"""Effusion mask values -> 0/1."""


def radiopaedia_to_hu(image: np.ndarray) -> np.ndarray:
    """Map a radiopaedia volume of COVID-19-CT-Seg ([0, 255] = the window [-1250, 250] HU) back to
    HU: ``v / 255 * (250 + 1250) - 1250``; float32, same shape."""
    lo, hi = HU_WINDOW
    return (np.asarray(image, dtype=np.float32) / 255.0 * (hi - lo) + lo).astype(np.float32)


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a ``.zip`` or ``.tar[.gz]`` into ``dest`` (created); refuses members that would land
    outside ``dest`` (absolute paths, ``..``, links). If the archive holds one top folder named
    like ``dest``, its content is moved up. Returns ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()

    def check(name: str) -> None:
        target = (root / name).resolve()
        if target != root and root not in target.parents:
            raise DatasetError(f"{archive}: member {name!r} would be written outside {dest}")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                check(name)
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                check(m.name)
                if m.issym() or m.islnk() or not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{archive}: member {m.name!r} is not a plain file")
            tf.extractall(dest, filter="data")
    else:
        raise DatasetError(f"{archive}: expected a .zip or .tar archive")
    inner = dest / dest.name
    if inner.is_dir() and [p.name for p in dest.iterdir()] == [dest.name]:
        for p in list(inner.iterdir()):
            p.rename(dest / p.name)
        inner.rmdir()
    return dest


def prepare_covid19_ct_seg(
    src: str | Path, out: str | Path, *, overwrite: bool = False
) -> DatasetSpec:
    """COVID-19-CT-Seg -> native layout (module docstring); returns the prepared dataset."""
    src = Path(src)
    if not ((src / "Infection_Mask").is_dir() or (src / "Lung_and_Infection_Mask").is_dir()):
        raise DatasetError(
            f"{src}: expected Infection_Mask/ or Lung_and_Infection_Mask/ beside the images"
        )
    cases = list(published.covid_dataset(src).cases)

    def convert(case: Case, image: np.ndarray) -> np.ndarray:
        return as_int16(radiopaedia_to_hu(image) if case.name.startswith("radiopaedia") else image)

    meta = native_meta("COVID-19-CT-Seg", len(cases), "covid", "window", HU_WINDOW)
    return write_native(Path(out), cases, meta, convert, overwrite=overwrite)


def _msd_root(src: Path) -> Path:
    if (src / "dataset.json").is_file():
        return src
    inner = src / "Task06_Lung"
    if (inner / "dataset.json").is_file():
        return inner
    raise DatasetError(f"{src}: expected Task06_Lung's dataset.json (in it or in Task06_Lung/)")


def prepare_msd_lung(src: str | Path, out: str | Path, *, overwrite: bool = False) -> DatasetSpec:
    """MSD Task06_Lung -> native layout (HU, the lung window as every set); returns the dataset."""
    spec = load_dataset(_msd_root(Path(src)))
    meta = native_meta("Task06_Lung", len(spec.cases), "tumour", "window", HU_WINDOW)
    return write_native(Path(out), list(spec.cases), meta, lambda c, x: x, overwrite=overwrite)


def _nsclc_image(src: Path, patient: str) -> Path | None:
    for p in sorted(src.rglob("*")):
        if "effusion" in p.name.lower():
            continue
        stem = io.strip_suffix(p) if p.is_file() else p.name
        if stem.upper() != patient.upper():
            continue
        if (p.is_file() and io.is_image_file(p)) or p.is_dir():
            return p
    return None


def nsclc_cases(src: str | Path) -> list[Case]:
    """The NSCLC pleural-effusion cases under ``src`` (module docstring), one per patient."""
    src = Path(src)
    masks: dict[str, Path] = {}
    for m in sorted(src.rglob("*effusion*")):
        hit = NSCLC_PATIENT.search(m.name)
        if hit and m.is_file() and io.is_image_file(m):
            masks.setdefault(hit.group(1).upper(), m)
    cases = []
    for patient, mask in sorted(masks.items()):
        image = _nsclc_image(src, patient)
        if image is None:
            logger.warning("skipping %s: no image named %s under %s", mask, patient, src)
            continue
        cases.append(Case(patient, image, mask, NSCLC_LABEL_MAP))
    if not cases:
        raise DatasetError(
            f"{src}: expected effusion masks named <LUNG1-NNN>*effusion*.nii.gz with their CT "
            "images, found none"
        )
    return cases


def prepare_nsclc_effusion(
    src: str | Path, out: str | Path, *, overwrite: bool = False
) -> DatasetSpec:
    """NSCLC pleural effusion -> native layout (HU, the lung window as every set); returns the
    dataset."""
    cases = nsclc_cases(src)
    meta = native_meta("NSCLC_effusion", len(cases), "effusion", "window", HU_WINDOW)
    return write_native(Path(out), cases, meta, lambda c, x: as_int16(x), overwrite=overwrite)


MSD_PATCH_SPACING = (2.0, 2.0)
"""Voxel size (mm) of ``msd_lung_patches``: MSD Task06_Lung resampled to 2 mm (its README)."""


def prepare_native(
    src: str | Path,
    out: str | Path,
    *,
    spacing: tuple[float, ...] | None = None,
    lesion: str | None = None,
    splits: tuple[str, ...] = ("train",),
    overwrite: bool = False,
) -> DatasetSpec:
    """Any layout rdcl reads -> native layout (NIfTI), declaring ``spacing`` (mm, array order) for
    files that carry none (PNG, ``.npz`` patches; a file with a real, different spacing is
    refused). The set's mapping is kept: its normalisation, window and units go into the new
    ``dataset.json``; ``lesion`` (default the set's own) is recorded; ``splits`` of the source
    are joined into one training set. Returns the prepared dataset."""
    specs = [load_dataset(Path(src), split=split) for split in splits]
    spec = dataclasses.replace(specs[0], cases=tuple(c for sp in specs for c in sp.cases))
    windows = {c.window for c in spec.cases}
    if len(windows) > 1:
        raise DatasetError(f"{src}: cases with different windows {sorted(windows)[:3]}")
    window = windows.pop()
    if spacing is not None:
        if len(spacing) != spec.dim or not all(s > 0 for s in spacing):
            raise RdclInputError(
                f"--spacing expected {spec.dim} positive voxel sizes (mm) for the {spec.dim}D "
                f"data set {src}, found {tuple(spacing)}"
            )
        spec = dataclasses.replace(
            spec, cases=tuple(dataclasses.replace(c, spacing=tuple(spacing)) for c in spec.cases)
        )
    kind = lesion or spec.lesion or "lesion"
    meta = native_meta(spec.name, len(spec.cases), kind, "", window)
    meta["rdcl"].update(units=spec.units)
    if spec.normalization is None:
        del meta["rdcl"]["normalization"]
    else:
        meta["rdcl"]["normalization"] = spec.normalization
    return write_native(Path(out), list(spec.cases), meta, lambda c, x: x, overwrite=overwrite)


def prepare_msd_patches(
    src: str | Path, out: str | Path, *, overwrite: bool = False
) -> DatasetSpec:
    """``msd_lung_patches`` (``.npz`` patches of MSD Task06_Lung at 2 mm, values in [0, 1]) ->
    native layout at :data:`MSD_PATCH_SPACING` (:func:`prepare_native`), all 260 patches (its
    ``val`` and ``test`` files) as training cases of the non-COVID set."""
    return prepare_native(
        src,
        out,
        spacing=MSD_PATCH_SPACING,
        lesion="tumour",
        splits=("train", "test"),
        overwrite=overwrite,
    )


PREPARERS: dict[str, Callable[..., DatasetSpec]] = {
    "covid19-ct-seg": prepare_covid19_ct_seg,
    "msd-lung": prepare_msd_lung,
    "nsclc-effusion": prepare_nsclc_effusion,
}
"""Layout name -> converter ``(src, out, *, overwrite) -> DatasetSpec`` (the published sets that
``rdcl download`` fetches; :func:`prepare_msd_patches`, :func:`prepare_native` and
:func:`prepare_slices` are called by name)."""


def prepare(
    layout: str, src: str | Path, out: str | Path, *, overwrite: bool = False
) -> DatasetSpec:
    """Convert ``src`` (layout ``layout``) into the native layout at ``out``."""
    if layout not in PREPARERS:
        raise RdclInputError(f"unknown layout {layout!r}; expected one of {sorted(PREPARERS)}")
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    return PREPARERS[layout](src, out, overwrite=overwrite)


LAYOUTS = (*PREPARERS, "msd-patches", "slices", "native")
"""The layouts :func:`prepare_layout` (``rdcl prepare``) converts: the published sets of
:data:`PREPARERS`, then ``msd-patches``, ``slices`` and ``native``."""


def prepare_layout(
    layout: str,
    src: str | Path,
    out: str | Path,
    *,
    spacing: Sequence[float] | None = None,
    max_per_case: int = 1,
    lesion: str = "tumour",
    overwrite: bool = False,
) -> DatasetSpec:
    """Convert the data set in folder ``src``, laid out as ``layout``, into rdcl's native layout
    in folder ``out`` (what ``rdcl prepare LAYOUT --src SRC --out OUT`` runs); returns the
    prepared dataset.

    ``layout`` is one of :data:`LAYOUTS`: a published set of :data:`PREPARERS`
    (``covid19-ct-seg``, ``msd-lung``, ``nsclc-effusion``: :func:`prepare`); ``msd-patches``
    (:func:`prepare_msd_patches`); ``slices`` (:func:`prepare_slices`: up to ``max_per_case``
    axial lesion slices per 3D case, recorded as lesion kind ``lesion``); ``native``
    (:func:`prepare_native`, declaring ``spacing``, voxel sizes in mm in array order ((y, x) in
    2D), for files that carry none). ``overwrite`` replaces a non-empty ``out``.

    Checked before anything is read, in this order (:class:`~rdcl.errors.RdclInputError`, one
    line each): ``layout`` is known; ``out`` and ``src`` (resolved) are different folders and
    neither lies inside the other; ``spacing`` comes only with ``native``. Then a missing ``src``
    raises :class:`FileNotFoundError` (a published set, ``slices``) or
    :class:`~rdcl.errors.DatasetError` (``native``, ``msd-patches``), as does data the converter
    cannot read.
    """
    if layout not in LAYOUTS:  # before the folders are looked at
        raise RdclInputError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    src, out = Path(src), Path(out)
    src_resolved, out_resolved = src.resolve(), out.resolve()
    if (
        out_resolved == src_resolved
        or out_resolved in src_resolved.parents
        or src_resolved in out_resolved.parents
    ):
        raise RdclInputError(f"--out {out} must lie outside --src {src}")
    if spacing is not None and layout != "native":
        raise RdclInputError(
            f"--spacing is for the 'native' layout (files without a spacing); found it with "
            f"{layout!r}"
        )
    if layout == "slices":
        if not src.is_dir():
            raise FileNotFoundError(f"source folder not found: {src}")
        return prepare_slices(
            src, out, max_per_case=max_per_case, lesion=lesion, overwrite=overwrite
        )
    if layout == "msd-patches":
        return prepare_msd_patches(src, out, overwrite=overwrite)
    if layout == "native":
        native_spacing = tuple(spacing) if spacing else None
        return prepare_native(src, out, spacing=native_spacing, overwrite=overwrite)
    return prepare(layout, src, out, overwrite=overwrite)
