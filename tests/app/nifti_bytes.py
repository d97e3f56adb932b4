"""Build NIfTI-1 files byte by byte, so tests can make every kind of malformed header.

Independent of the C++ reader under test: fields are laid out from the NIfTI-1 standard
(nifti1.h) with :mod:`struct`.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field

import numpy as np

DTYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
    768: np.uint32,
    1024: np.int64,
    1280: np.uint64,
}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


@dataclass
class Header:
    """The NIfTI-1 fields rdcl cares about; everything else is zero."""

    dim: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 1, 1, 1, 1])
    datatype: int = 4
    bitpix: int = 16
    pixdim: list[float] = field(default_factory=lambda: [1.0, 0.7, 0.8, 2.5, 1, 1, 1, 1])
    vox_offset: float = 352.0
    scl_slope: float = 1.0
    scl_inter: float = 0.0
    xyzt_units: int = 2  # mm
    qform_code: int = 1
    sform_code: int = 1
    quatern: tuple[float, float, float] = (0.0, 0.0, 0.0)
    qoffset: tuple[float, float, float] = (-10.0, 20.5, 3.25)
    srow: tuple[tuple[float, ...], ...] = (
        (-0.7, 0.0, 0.0, 10.0),
        (0.0, -0.8, 0.0, -20.5),
        (0.0, 0.0, 2.5, 3.25),
    )
    sizeof_hdr: int = 348
    magic: bytes = b"n+1\0"

    def pack(self, endian: str = "<") -> bytes:
        """The 348-byte header in byte order ``endian`` ('<' or '>')."""
        e = endian
        b = bytearray(348)
        struct.pack_into(e + "i", b, 0, self.sizeof_hdr)
        struct.pack_into(e + "8h", b, 40, *self.dim)
        struct.pack_into(e + "hhh", b, 70, self.datatype, self.bitpix, 0)
        struct.pack_into(e + "8f", b, 76, *self.pixdim)
        struct.pack_into(e + "3f", b, 108, self.vox_offset, self.scl_slope, self.scl_inter)
        b[123] = self.xyzt_units
        struct.pack_into(e + "hh", b, 252, self.qform_code, self.sform_code)
        struct.pack_into(e + "6f", b, 256, *self.quatern, *self.qoffset)
        struct.pack_into(e + "12f", b, 280, *[v for row in self.srow for v in row])
        b[344:348] = self.magic
        return bytes(b)


def nifti_bytes(
    array: np.ndarray, header: Header | None = None, *, endian: str = "<", gz: bool = False
) -> bytes:
    """A single-file NIfTI-1 holding ``array`` (array order, x fastest) under ``header``.

    ``header.dim`` and ``datatype`` are filled from the array unless the caller set them to
    something else on purpose (pass a header with ``dim``/``datatype`` already matching).
    """
    h = header or Header()
    arr = np.ascontiguousarray(array)
    data = arr.astype(arr.dtype.newbyteorder(endian)).tobytes()
    off = h.vox_offset if np.isfinite(h.vox_offset) and h.vox_offset < 1e6 else 352
    pad = b"\0" * max(0, int(off) - 348)
    raw = h.pack(endian) + pad + data
    return gzip.compress(raw) if gz else raw


def header_for(array: np.ndarray, **kw) -> Header:
    """A valid header for ``array`` (2D or 3D), with fields overridden by ``kw``."""
    arr = np.asarray(array)
    shape = list(reversed(arr.shape))
    dim = [arr.ndim, *shape] + [1] * (7 - arr.ndim)
    code = CODES[arr.dtype]
    h = Header(dim=dim, datatype=code, bitpix=arr.dtype.itemsize * 8)
    for k, v in kw.items():
        setattr(h, k, v)
    return h
