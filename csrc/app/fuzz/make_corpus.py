"""Write the seed corpus of the NIfTI parser fuzzer (csrc/app/fuzz/corpus/).

Synthetic files only: small random arrays written by SimpleITK (each supported datatype, 2D and
3D, .nii and .nii.gz, scl_slope), a big-endian file, inputs the fuzz target gzips itself
(Z_*.bin), and header-only copies of the real NIfTI headers under ../shared/data (the 348-byte
header with its text fields blanked and no voxel data, so no patient data enters the
repository). Run from the repository root: ``python csrc/app/fuzz/make_corpus.py``.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus"
SHARED = HERE.parents[2].parent / "shared" / "data"


def _header_only(src: Path) -> bytes:
    """The first 352 bytes of a NIfTI file with db_name, descrip, aux_file, intent_name blanked."""
    with gzip.open(src, "rb") if src.name.endswith(".gz") else open(src, "rb") as f:
        head = bytearray(f.read(352))
    for off, n in ((14, 18), (148, 80), (228, 24), (328, 16)):
        head[off : off + n] = b"\0" * n
    return bytes(head)


def main() -> int:
    """Write the corpus; return 0."""
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    tmp = OUT / "tmp.nii"
    for dtype in (np.uint8, np.int16, np.int32, np.float32, np.float64):
        for shape in ((3, 4, 5), (4, 5), (1, 3, 2)):
            arr = (rng.random(shape) * 100).astype(dtype)
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing([0.5 + i for i in range(len(shape))])
            img.SetOrigin([-1.5 * (i + 1) for i in range(len(shape))])
            name = f"{np.dtype(dtype).name}_{'x'.join(map(str, shape))}"
            sitk.WriteImage(img, str(tmp))
            raw = tmp.read_bytes()
            (OUT / f"{name}.nii").write_bytes(raw)
            (OUT / f"{name}.nii.gz").write_bytes(gzip.compress(raw, mtime=0))
    tmp.unlink()
    # scl_slope / scl_inter and a big-endian copy of an int16 file
    raw = bytearray((OUT / "int16_3x4x5.nii").read_bytes())
    scaled = bytearray(raw)
    struct.pack_into("<ff", scaled, 112, 2.0, -1024.0)
    (OUT / "int16_scaled.nii").write_bytes(bytes(scaled))
    big = bytearray(raw)
    for off, fmt in ((0, "i"), (40, "8h"), (70, "3h"), (76, "8f"), (108, "3f"), (252, "2h")):
        vals = struct.unpack_from("<" + fmt, raw, off)
        struct.pack_into(">" + fmt, big, off, *vals)
    for off in (256, 280):
        n = 6 if off == 256 else 12
        struct.pack_into(f">{n}f", big, off, *struct.unpack_from(f"<{n}f", raw, off))
    data = np.frombuffer(bytes(raw[352:]), dtype="<i2").astype(">i2").tobytes()
    (OUT / "int16_bigendian.nii").write_bytes(bytes(big[:352]) + data)
    # 'Z' + split byte: the fuzz target gzips the rest itself (two members when split < 255)
    for name, split in (("int16_3x4x5", 255), ("float32_4x5", 100), ("uint8_1x3x2", 200)):
        raw = (OUT / f"{name}.nii").read_bytes()
        (OUT / f"Z_{name}.bin").write_bytes(b"Z" + bytes([split]) + raw)
    # header-only copies of real files
    if SHARED.is_dir():
        for src in sorted(SHARED.rglob("*.nii*"))[:6]:
            name = src.name.replace(".nii.gz", "").replace(".nii", "")
            (OUT / f"real_header_{name}.nii").write_bytes(_header_only(src))
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
