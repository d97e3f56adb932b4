"""Write a synthetic dataset in rdcl's native layout (nnU-Net v2 raw, docs/architecture.md)."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import numpy as np

from rdcl.data.io import Geometry, channel_file_name, write_image
from rdcl.data.synth.memory import SynthMemoryError, check_memory, estimate_bytes
from rdcl.data.synth.phantom import KINDS, default_spacing, synthesize_phantom
from rdcl.errors import RdclInputError
from rdcl.fsutil import staged_dir

logger = logging.getLogger(__name__)

_DEFAULT_SHAPE = {3: (32, 96, 96), 2: (128, 128)}


def case_geometry(shape: tuple[int, ...], spacing: tuple[float, ...]) -> Geometry:
    """Identity direction, origin placing the grid centre at (0, 0, 0) mm."""
    dim = len(shape)
    origin = tuple(
        -(n - 1) / 2 * s for n, s in zip(reversed(shape), reversed(spacing), strict=True)
    )
    eye = tuple(float(i == j) for i in range(dim) for j in range(dim))
    return Geometry(spacing=tuple(float(s) for s in spacing), origin=origin, direction=eye)


def _resolve(dim, shape, spacing) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if dim not in (2, 3):
        raise RdclInputError(f"dim must be 2 or 3, found {dim!r}")
    shape = tuple(int(n) for n in (shape if shape is not None else _DEFAULT_SHAPE[dim]))
    if len(shape) != dim:
        raise RdclInputError(f"shape must have {dim} entries for dim={dim}, found {shape}")
    spacing = tuple(float(s) for s in (spacing if spacing is not None else default_spacing(shape)))
    if len(spacing) != dim:
        raise RdclInputError(f"spacing must have {dim} entries for dim={dim}, found {spacing}")
    return shape, spacing


def synthesize_dataset(
    out_dir: str | Path,
    *,
    kind: str,
    n_cases: int,
    dim: int = 3,
    shape: tuple[int, ...] | None = None,
    spacing: tuple[float, ...] | None = None,
    n_test: int = 0,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``n_cases`` training and ``n_test`` test phantoms of ``kind`` to ``out_dir``.

    Layout: ``dataset.json``, ``imagesTr/<kind>_NNN_0000.nii.gz`` (int16 HU),
    ``labelsTr/<kind>_NNN.nii.gz`` (uint8 0/1), and ``imagesTs/``, ``labelsTs/`` when
    ``n_test > 0`` (numbered after the training cases). shape: (z, y, x) for ``dim=3``, (y, x)
    for ``dim=2``, default (32, 96, 96) / (128, 128); spacing in mm in the same order, default
    :func:`~rdcl.data.synth.phantom.default_spacing`. Case i depends only on (seed, kind, i), so
    a larger ``n_cases`` extends a dataset. Everything is written into a hidden sibling folder and
    renamed into place at the end, so a failure leaves nothing half-written.

    Returns ``out_dir`` as a Path. Raises FileExistsError when ``out_dir`` exists and is not an
    empty folder and ``overwrite`` is False (``out_dir`` is then left untouched), ValueError for
    bad arguments, :class:`~rdcl.data.synth.memory.SynthMemoryError` (a ValueError, one line
    naming the need) before anything is written when one phantom of ``shape`` needs more memory
    than is available (:func:`~rdcl.data.synth.memory.estimate_bytes`).
    """
    if kind not in KINDS:
        raise RdclInputError(f"kind must be one of {KINDS}, found {kind!r}")
    if int(n_cases) < 1 or int(n_test) < 0:
        raise RdclInputError(f"need n_cases >= 1 and n_test >= 0, found {n_cases} and {n_test}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RdclInputError(f"seed must be an integer >= 0, found {seed!r}")
    shape, spacing = _resolve(dim, shape, spacing)
    check_memory(shape)  # before anything is created
    out = Path(out_dir)
    geometry = case_geometry(shape, spacing)
    salt = zlib.crc32(kind.encode())
    with staged_dir(out, overwrite=overwrite) as tmp:
        case_kinds = {}
        for i in range(n_cases + n_test):
            name = f"{kind}_{i:03d}"
            images, labels = ("imagesTr", "labelsTr") if i < n_cases else ("imagesTs", "labelsTs")
            rng = np.random.default_rng([seed, salt, i])
            try:
                ph = synthesize_phantom(kind, shape, spacing, rng)
            except MemoryError:
                raise SynthMemoryError(
                    f"ran out of memory synthesising a phantom of shape "
                    f"{'x'.join(map(str, shape))} (estimated need {estimate_bytes(shape):,} "
                    "bytes); choose a smaller shape"
                ) from None
            write_image(ph.image, geometry, tmp / images / channel_file_name(name))
            write_image(ph.mask, geometry, tmp / labels / f"{name}.nii.gz")
            case_kinds[name] = ph.kind
        description = {
            "name": f"rdcl-synth-{kind}",
            "description": f"rdcl synthetic chest CT phantoms with {kind} lesions (seed {seed})",
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "lesion": 1},
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
            "rdcl": {
                "lesion": kind,
                "synthetic": {
                    "seed": seed,
                    "shape": list(shape),
                    "spacing": list(spacing),
                    "case_kinds": case_kinds,
                },
            },
        }
        (tmp / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    logger.info("wrote %d + %d synthetic %s cases to %s", n_cases, n_test, kind, out)
    return out
