"""Medical image I/O through SimpleITK: the one place where (x, y, z) becomes (z, y, x).

Arrays are returned in array order, (z, y, x) for volumes and (y, x) for 2D images; the
:class:`Geometry` holds spacing (mm) in the same array order, plus origin and direction as
SimpleITK reports them (physical (x, y, z) order, since they are not per-array-axis quantities).
Geometry round-trips unchanged through :func:`read_image` / :func:`write_image`.

SimpleITK is imported lazily inside the functions so that the rest of rdcl (model, kernels,
metrics) imports on machines without it.
"""

from __future__ import annotations

import contextlib
import errno
import locale
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from rdcl.data.io.lib_messages import captured_stderr
from rdcl.data.io.nifti_check import NiftiCheckError, check_nifti, is_nifti_name
from rdcl.errors import ImageReadError, ImageWriteError, RdclInputError
from rdcl.fsutil import atomic_write_path, make_staging_dir, move_into_place

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png")


@dataclass(frozen=True)
class Geometry:
    """Physical placement of an image.

    spacing: voxel size in mm, array axis order ((z, y, x) or (y, x)).
    origin: physical position of voxel 0 in mm, SimpleITK (x, y, z) order.
    direction: row-major direction cosines, SimpleITK order (dim*dim values).
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.spacing)

    @classmethod
    def default(cls, dim: int, spacing: tuple[float, ...] | None = None) -> Geometry:
        """Identity direction, zero origin, unit (or given) spacing."""
        sp = tuple(float(s) for s in (spacing or (1.0,) * dim))
        eye = tuple(float(i == j) for i in range(dim) for j in range(dim))
        return cls(spacing=sp, origin=(0.0,) * dim, direction=eye)

    def matches(self, other: Geometry, *, atol: float = 1e-4) -> bool:
        """True when both geometries agree within ``atol`` (mm, and unitless for direction)."""
        return (
            self.dim == other.dim
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )


CHANNEL_SUFFIX = "_0000"
"""nnU-Net's channel suffix: the image of case ``CASE`` is ``CASE_0000<ending>``, its label
``CASE<ending>``, its predicted mask ``CASE<ending>``."""


def channel_file_name(case: str, ending: str = ".nii.gz") -> str:
    """File name of the (single-channel) image of ``case`` in the nnU-Net layout:
    ``channel_file_name("lung_001")`` -> ``"lung_001_0000.nii.gz"``."""
    return f"{case}{CHANNEL_SUFFIX}{ending}"


def drop_channel_suffix(stem: str) -> str:
    """``stem`` without a trailing nnU-Net channel suffix (``case_0000`` -> ``case``); a stem
    that is nothing but the suffix, or lacks it, is returned unchanged."""
    if len(stem) > len(CHANNEL_SUFFIX) and stem.endswith(CHANNEL_SUFFIX):
        return stem[: -len(CHANNEL_SUFFIX)]
    return stem


def strip_suffix(path: str | Path) -> str:
    """File name without its image suffix: ``case_0000.nii.gz`` -> ``case_0000``."""
    name = Path(path).name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def is_image_file(path: str | Path) -> bool:
    """True when the name ends with a supported image suffix."""
    return Path(path).name.lower().endswith(IMAGE_SUFFIXES)


def is_dicom_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder to read as ONE image, a DICOM series (:func:`read_image`),
    rather than a folder of image files: it holds no file with an image suffix and at least one
    named ``*.dcm`` or without a suffix (as DICOM exports name their slices)."""
    path = Path(path)
    if not path.is_dir():
        return False
    files = [p for p in path.iterdir() if p.is_file()]
    return not any(is_image_file(p) for p in files) and any(
        p.suffix.lower() in (".dcm", "") for p in files
    )


@contextlib.contextmanager
def preserve_locale() -> Iterator[None]:
    """Restore the process locale after a SimpleITK call.

    ITK's DICOM (GDCM) writer resets the C locale of the whole process to "C", after which Python's
    default text encoding becomes ASCII for every later ``open()`` in the process (torch,
    matplotlib and user code included). Every SimpleITK read/write in rdcl runs inside this guard.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def path_problem(path: str | Path) -> str | None:
    """What is at ``path`` when it is not a readable file: ``"nothing"``, ``"a broken symbolic
    link"``, ``"a symbolic link loop"``, ``"a folder"``, ``"a file without read permission"``
    (or the OS's reason); ``None`` when it is a readable file."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.EACCES:
            return "a path without search permission"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "a broken symbolic link"
        return "nothing" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else str(exc.strerror)
    if os.path.isdir(path):
        return "a folder"
    if not os.access(path, os.R_OK):
        return "a file without read permission"
    return None


def _missing(path: Path) -> str:
    """The one-line reason for an image path that does not exist (or is a link loop)."""
    problem = path_problem(path)
    return (
        f"image not found: {path}"
        if problem == "nothing"
        else (f"expected an image at {path}, found {problem}")
    )


def _sitk():
    import SimpleITK as sitk

    return sitk


def _from_sitk(img) -> tuple[np.ndarray, Geometry]:
    sitk = _sitk()
    if img.GetNumberOfComponentsPerPixel() > 1:
        # Colour PNGs with identical channels (e.g. grey masks saved as RGB): keep channel 0.
        # A fully opaque alpha channel (RGBA) carries nothing and is dropped.
        arr = sitk.GetArrayFromImage(img)
        n = arr.shape[-1]
        opaque = np.iinfo(arr.dtype).max if arr.dtype.kind in "ui" else 1.0
        if n == 4 and np.all(arr[..., -1] == opaque):
            arr = arr[..., :-1]
        if not np.all(arr == arr[..., :1]):
            raise ImageReadError(
                f"expected a single-channel (grey) image, found {arr.shape[-1]} differing channels"
            )
        arr = np.ascontiguousarray(arr[..., 0])
    else:
        arr = sitk.GetArrayFromImage(img)
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise ImageReadError(f"expected a 2D or 3D image, found {dim}D")
    geom = Geometry(
        spacing=tuple(float(s) for s in reversed(img.GetSpacing())),
        origin=tuple(float(o) for o in img.GetOrigin()),
        direction=tuple(float(d) for d in img.GetDirection()),
    )
    return arr, geom


def _sitk_reason(exc: BaseException) -> str:
    """The informative part of a SimpleITK exception: source locations, object addresses and
    nrrd's "trouble" chain dropped; at most the last two lines, joined."""
    keep = []
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if line.startswith("Exception thrown in SimpleITK"):
            continue
        line = re.sub(r"^(ITK ERROR: )?\w+\(0x[0-9a-f]+\): ", "", line)
        line = re.sub(r"^sitk::ERROR: ", "", line)
        if not line or line.endswith(":") or "trouble" in line:
            continue
        if line.startswith("Reason: No such file or directory"):
            continue  # a stale errno reported after a failed read of an existing file
        keep.append(line)
    return "; ".join(keep[-2:])


def _sitk_call(
    call: Callable[[], T],
    path: Path,
    what: str,
    error: type[ValueError] = ImageReadError,
    *,
    quiet: bool = False,
    refuse: tuple[str, ...] = (),
) -> T:
    """Run a SimpleITK ``call`` on ``path`` with its stderr messages captured and the locale kept.

    A RuntimeError becomes one ``error`` line ``cannot <what> <path>: <reason>``
    that includes what the libraries printed, and so does a call that succeeded while printing a
    message containing one of the ``refuse`` phrases; other messages of a call that succeeded are
    logged as one rdcl warning line (a debug line with ``quiet``, for lookups whose outcome rdcl
    reports)."""
    with captured_stderr() as msgs, preserve_locale():
        try:
            return_value, failure = call(), None
        except RuntimeError as exc:
            return_value, failure = None, exc
    said = msgs.summary()
    if failure is None and any(phrase in said for phrase in refuse):
        raise error(f"cannot {what} {path}: {said}")
    if failure is not None:
        reason = "; ".join(r for r in (_sitk_reason(failure), said) if r)
        raise error(f"cannot {what} {path}: {reason}") from failure
    if said:
        log.log(logging.DEBUG if quiet else logging.WARNING, "%s: SimpleITK says: %s", path, said)
    return return_value  # type: ignore[return-value]


def _looks_like_dicom(path: Path) -> bool:
    """A ``.dcm`` name or the ``DICM`` preamble marker at byte 128."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _check_series_complete(folder: Path, files: Sequence[str]) -> None:
    """Refuse a DICOM folder holding DICOM files that GDCM left out of its one series (a
    truncated or unreadable slice is dropped silently and the volume read without it)."""
    listed = {os.path.realpath(f) for f in files}
    left_out = [
        p.name
        for p in sorted(folder.iterdir())
        if p.is_file()
        and p.name.upper() != "DICOMDIR"
        and os.path.realpath(p) not in listed
        and _looks_like_dicom(p)
    ]
    if left_out:
        shown = ", ".join(left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        raise ImageReadError(
            f"cannot read DICOM folder {folder}: {len(left_out)} DICOM file(s) are not part of "
            f"its series of {len(files)} (truncated, unreadable or from another series): {shown}"
        )


def _check_nifti(path: Path, *, payload: bool) -> None:
    if path.is_file() and is_nifti_name(path):
        try:
            check_nifti(path, payload=payload)
        except NiftiCheckError as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def _check_geometry(path: Path, geom: Geometry) -> None:
    if not all(math.isfinite(s) and s > 0 for s in geom.spacing):
        raise ImageReadError(f"{path}: expected voxel sizes > 0 mm, found spacing {geom.spacing}")


def read_image(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a 2D/3D image file or a DICOM series folder.

    Returns ``(array, geometry)`` with the array in (z, y, x) / (y, x) order and its native dtype.
    A 3D file with a single slice stays 3D. Raises :class:`ImageReadError` (one line with the path
    and reason, including what SimpleITK's libraries printed) for missing, unreadable, corrupt,
    truncated (NIfTI: fewer voxel bytes than the header announces), multi-channel or 4D inputs,
    NaN/inf voxels, voxel sizes that are not > 0 mm, and folders holding more than one DICOM
    series.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(_missing(path))
    sitk = _sitk()
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = _sitk_call(
            lambda: reader.GetGDCMSeriesIDs(str(path)), path, "read DICOM folder", quiet=True
        )
        if len(series) > 1:
            raise ImageReadError(
                f"expected one DICOM series in folder {path}, found {len(series)} "
                f"(series UIDs {', '.join(series[:3])}); give each series its own folder"
            )
        files = _sitk_call(
            lambda: reader.GetGDCMSeriesFileNames(str(path)),
            path,
            "read DICOM folder",
            quiet=True,
        )
        if not files:
            raise ImageReadError(f"no DICOM series found in folder {path}")
        _check_series_complete(path, files)
        reader.SetFileNames(files)
        img = _sitk_call(reader.Execute, path, "read image", refuse=("missing slices",))
    else:
        if not path.is_file():
            raise ImageReadError(f"expected an image file or a DICOM folder, found {path}")
        _check_nifti(path, payload=True)
        img = _sitk_call(lambda: sitk.ReadImage(str(path)), path, "read image")
    try:
        arr, geom = _from_sitk(img)
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from exc
    _check_geometry(path, geom)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ImageReadError(f"{path}: {bad} NaN/inf voxels; expected finite intensities")
    return arr, geom


def read_info(path: str | Path) -> tuple[tuple[int, ...], Geometry]:
    """Read only the header of an image file: ``(shape, geometry)`` in array order.

    Cheap (no voxel data is loaded). Raises :class:`ImageReadError` for missing or unreadable
    files, images that are not 2D or 3D and voxel sizes that are not > 0 mm.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(
            _missing(path) if not path.exists() else f"expected an image file, found {path}"
        )
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    _check_nifti(path, payload=False)
    _sitk_call(reader.ReadImageInformation, path, "read image header")
    dim = reader.GetDimension()
    if dim not in (2, 3):
        raise ImageReadError(f"{path}: expected a 2D or 3D image, found {dim}D")
    shape = tuple(int(s) for s in reversed(reader.GetSize()))
    geom = Geometry(
        spacing=tuple(float(s) for s in reversed(reader.GetSpacing())),
        origin=tuple(float(o) for o in reader.GetOrigin()),
        direction=tuple(float(d) for d in reader.GetDirection()),
    )
    _check_geometry(path, geom)
    return shape, geom


def write_image(
    array: np.ndarray, geometry: Geometry, path: str | Path, *, overwrite: bool = False
) -> None:
    """Write ``array`` ((z, y, x) or (y, x)) with ``geometry`` atomically (temp file + rename).

    Raises :class:`FileExistsError` when ``path`` exists and ``overwrite`` is False, and
    :class:`ValueError` when the array rank does not match the geometry.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"output exists (pass overwrite=True / --overwrite): {path}")
    array = np.asarray(array)
    if array.ndim != geometry.dim:
        raise RdclInputError(
            f"array has {array.ndim} dimensions but the geometry has {geometry.dim}"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    sitk = _sitk()
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(reversed(geometry.spacing)))
    img.SetOrigin(geometry.origin)
    img.SetDirection(geometry.direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    if suffix in _TWO_FILE_SUFFIXES:
        _write_header_and_data(img, path)
        return
    compress = suffix in (".nii.gz", ".nrrd", ".mha")
    atomic_write_path(
        path,
        lambda tmp: _sitk_call(
            lambda: sitk.WriteImage(img, str(tmp), useCompression=compress),
            path,
            "write image",
            ImageWriteError,
        ),
        suffix=suffix,
    )


_TWO_FILE_SUFFIXES = (".mhd", ".nhdr")
"""Formats whose header names a separate data file (``case.mhd`` -> ``case.raw``)."""


def _write_header_and_data(img, path: Path) -> None:
    """Write a header + data pair under its final names: both go to a temp folder beside
    ``path`` first (so the header names ``<stem>.raw``, not a temp name), then the data file(s)
    and last the header are moved into place."""
    sitk = _sitk()
    tmp_dir = make_staging_dir(path)
    try:
        _sitk_call(
            lambda: sitk.WriteImage(img, str(tmp_dir / path.name)),
            path,
            "write image",
            ImageWriteError,
        )
        header = tmp_dir / path.name
        for f in sorted(tmp_dir.iterdir()):
            if f != header:
                move_into_place(f, path.parent / f.name)
        move_into_place(header, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
