"""Checks SimpleITK's NIfTI reader leaves out: truncated files, non-finite voxels, bad pixdim.

SimpleITK (ITK's NiftiImageIO on niftilib) reads the voxels; this module only verifies, from the
header and the byte count of the payload, that what it returns is the file's content:

- a truncated ``.nii``/``.nii.gz`` is read without an error, the missing voxels filled with zeros;
- niftilib's ``nifti_read_buffer`` silently sets every NaN/inf of a float image to 0, so the
  finiteness check after the read cannot see them (the payload is scanned for them here);
- a pixdim of 0, NaN, inf or < 0 on a spatial axis is replaced by 1.0 mm (with ITK warnings).

Nothing here builds an image: the header fields read are ``sizeof_hdr``, the magic, the sizes
(``dim``, ``datatype``/``bitpix``, ``vox_offset``) and ``pixdim``. NIfTI-1 (348-byte) and
NIfTI-2 (540-byte) single-file headers in either byte order are accepted; a ``.nii``/``.nii.gz``
with any other header (Analyze, a ``.hdr``/``.img`` pair header, a wrong ``sizeof_hdr``, a mixed
byte order, a ``dim`` or ``vox_offset`` that SimpleITK would silently "repair") is refused.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdcl.errors import ImageReadError

_FLOAT_TYPES = {16: "f4", 32: "f4", 64: "f8", 1792: "f8", 1536: "f16", 2048: "f16"}
"""NIfTI datatype code -> numpy float kind of its components (float32/64/128, complex64/128/256)."""

_CHUNK = 1 << 22


class NiftiCheckError(ImageReadError):
    """The NIfTI file is truncated, holds non-finite voxels or has invalid voxel sizes."""


@dataclass(frozen=True)
class NiftiHeader:
    """The header fields this module checks.

    shape: ``dim[1..dim[0]]`` in NIfTI (x, y, z, ...) order; ``pixdim`` the matching voxel sizes;
    ``vox_offset`` the byte offset of the voxels; ``bitpix`` bits per voxel; ``endian`` ``<``/``>``.
    """

    shape: tuple[int, ...]
    pixdim: tuple[float, ...]
    datatype: int
    bitpix: int
    vox_offset: int
    endian: str

    @property
    def payload_bytes(self) -> int:
        """Bytes of voxel data the header announces."""
        return math.prod(self.shape) * self.bitpix // 8


def is_nifti_name(path: str | Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` names (the single-file NIfTI kinds checked here)."""
    name = Path(path).name.lower()
    return name.endswith((".nii", ".nii.gz"))


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


_BYTES_PER_VOXEL = {
    1: None, 2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8,
    1280: 8, 1536: 16, 1792: 16, 2048: 32, 2304: 4,
}  # fmt: skip
"""Bytes per voxel of each NIfTI datatype code (niftilib's sizes; 1 = binary: from bitpix)."""


def parse_header(raw: bytes) -> NiftiHeader:
    """The checked fields of a single-file NIfTI-1 (``n+1``) or NIfTI-2 (``n+2``) header, either
    byte order. Raises :class:`NiftiCheckError` (one line) when ``raw`` is not one: a wrong
    ``sizeof_hdr`` or magic (Analyze, a ``.hdr``/``.img`` pair header, a mixed byte order), a
    ``dim`` outside 1..7 axes of size >= 1, or a ``vox_offset`` that is not a whole number past
    the header. SimpleITK reads most of these anyway, with shifted or invented voxels."""
    if len(raw) < 348:
        raise NiftiCheckError(f"expected a 348-byte NIfTI header, found {len(raw)} bytes")
    sizes = {e: struct.unpack(e + "i", raw[:4])[0] for e in "<>"}
    endian = next((e for e in "<>" if sizes[e] in (348, 540)), None)
    if endian is None:
        raise NiftiCheckError(
            f"expected a NIfTI header (sizeof_hdr 348 or 540), found sizeof_hdr {sizes['<']}"
        )
    if sizes[endian] == 348:
        magic, want, first = raw[344:348], b"n+1\x00", 352
        dims = struct.unpack(endian + "8h", raw[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", raw[70:74])
        pixdim = struct.unpack(endian + "8f", raw[76:108])
        vox_offset: float = struct.unpack(endian + "f", raw[108:112])[0]
    else:
        if len(raw) < 540:
            raise NiftiCheckError(f"expected a 540-byte NIfTI-2 header, found {len(raw)} bytes")
        magic, want, first = raw[4:8], b"n+2\x00", 544
        datatype, bitpix = struct.unpack(endian + "2h", raw[12:16])
        dims = struct.unpack(endian + "8q", raw[16:80])
        pixdim = struct.unpack(endian + "8d", raw[104:168])
        vox_offset = float(struct.unpack(endian + "q", raw[168:176])[0])
    if magic != want:
        pair = " (the header of a .hdr/.img pair)" if magic[:2] == b"ni" else ""
        raise NiftiCheckError(
            f"expected the single-file NIfTI magic {want[:3].decode()!r}, found "
            f"{magic.rstrip(bytes(1))!r}{pair}"
        )
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise NiftiCheckError(
            f"expected dim[0] (the number of axes) between 1 and 7, found {ndim}"
            + (" (mixed byte order?)" if ndim > 7 else "")
        )
    for i, d in enumerate(dims[1 : ndim + 1], start=1):
        if d < 1:
            raise NiftiCheckError(f"expected dim[{i}] >= 1, found {d}")
    if not (math.isfinite(vox_offset) and vox_offset.is_integer() and vox_offset >= first):
        raise NiftiCheckError(
            f"expected vox_offset to be a whole number of bytes >= {first}, found {vox_offset}"
        )
    size = _BYTES_PER_VOXEL.get(int(datatype))
    bits = size * 8 if size else int(bitpix)
    if bits <= 0:
        raise NiftiCheckError(f"expected bitpix > 0 for datatype {datatype}, found {bitpix}")
    return NiftiHeader(
        shape=tuple(int(d) for d in dims[1 : ndim + 1]),
        pixdim=tuple(float(p) for p in pixdim[1 : ndim + 1]),
        datatype=int(datatype),
        bitpix=bits,
        vox_offset=int(vox_offset),
        endian=endian,
    )


def check_nifti(path: str | Path, *, payload: bool = True) -> None:
    """Raise :class:`NiftiCheckError` (one line, no path) when the NIfTI file at ``path`` has a
    spatial pixdim that is not a finite size > 0 mm or, with ``payload``, is truncated or holds a
    non-finite voxel (float types). Without ``payload`` only the header is read. With it, integer
    images are usually settled from the file size (``.nii``) or the gzip trailer (``.nii.gz``, see
    :func:`_complete_without_reading`); float images and files that do not settle that way are
    read once (decompressed). A ``.nii``/``.nii.gz`` whose header is not a valid single-file
    NIfTI-1/-2 header is refused (:func:`parse_header`)."""
    path = Path(path)
    try:
        with _open(path) as fh:
            raw = fh.read(540)
            header = parse_header(raw)
            spatial = header.pixdim[:3]
            if not all(math.isfinite(p) and p > 0 for p in spatial):
                raise NiftiCheckError(
                    f"expected voxel sizes (pixdim) > 0 mm, found "
                    f"{tuple(round(p, 6) if math.isfinite(p) else p for p in spatial)} (x, y, z); "
                    "SimpleITK would substitute 1.0 mm"
                )
            if not payload or _complete_without_reading(path, header):
                return
            have, nonfinite = _scan_payload(fh, raw, header)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, NiftiCheckError):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise NiftiCheckError(f"truncated or corrupt file ({reason})") from exc
    need = header.payload_bytes
    if have < need:
        raise NiftiCheckError(
            f"truncated file: the header announces {'x'.join(map(str, header.shape))} voxels "
            f"({need} bytes of voxel data), found {have} bytes ({100.0 * have / need:.0f}%)"
        )
    if nonfinite:
        raise NiftiCheckError(f"{nonfinite} NaN/inf voxels; expected finite intensities")


def _complete_without_reading(path: Path, header: NiftiHeader) -> bool:
    """True when an integer image is shown complete without decompressing it.

    ``.nii``: the file holds ``vox_offset`` + payload bytes. ``.nii.gz``: the gzip trailer's ISIZE
    (uncompressed length mod 2**32) equals ``vox_offset`` + payload exactly, as every single-member
    writer (ITK, nibabel, niftilib) leaves it; a truncated stream ends in compressed data, which
    matches that number with probability 2**-32. Anything else (float data, which must be scanned
    for NaN/inf, trailing data, several gzip members) returns False: the payload is then read."""
    if header.datatype in _FLOAT_TYPES:
        return False
    expected = header.vox_offset + header.payload_bytes
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
        if not gz:
            return os.fstat(fh.fileno()).st_size >= expected
        size = os.fstat(fh.fileno()).st_size
        if size < 18:
            return False
        fh.seek(size - 4)
        (isize,) = struct.unpack("<I", fh.read(4))
    return isize == expected % (1 << 32)


def _scan_payload(fh, raw: bytes, header: NiftiHeader) -> tuple[int, int]:
    """Read the rest of ``fh`` (``raw`` already read): (payload bytes present, non-finite count).

    Non-finite values are counted only for float/complex datatypes, only inside the announced
    payload."""
    need = header.payload_bytes
    kind = _FLOAT_TYPES.get(header.datatype)
    dtype = np.dtype(header.endian + kind) if kind and kind != "f16" else None
    pending = raw[header.vox_offset :] if len(raw) > header.vox_offset else b""
    skip = max(0, header.vox_offset - len(raw))
    have = nonfinite = 0
    tail = b""
    while True:
        if skip:
            block = fh.read(min(skip, _CHUNK))
            if not block:
                break
            skip -= len(block)
            continue
        block = pending or fh.read(_CHUNK)
        pending = b""
        if not block:
            break
        block = block[: max(0, need - have)]
        have += len(block)
        if dtype is not None and block:
            data = tail + block
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
            tail = data[usable:]
        if have >= need:
            while fh.read(_CHUNK):  # reach the end of a gzip stream: its CRC trailer is verified
                pass
            break
    return have, nonfinite
