"""``export_model``: checkpoint -> one checked predictor file (TorchScript or AOTInductor).

Writes to a temporary file beside ``out``, reloads it, compares it with the eager predictor
(:mod:`rdcl.export.check`) and only then renames it to ``out``; a failed check or any error
removes the temporary file and leaves an existing ``out`` untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdcl.data.io import Geometry
from rdcl.errors import RdclInputError
from rdcl.export.aoti import compile_network, load_network
from rdcl.export.check import CheckResult, check_input, compare
from rdcl.export.torchscript import build_scripted, save_scripted
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.exported import build_metadata
from rdcl.formats.run_folder import find_checkpoint
from rdcl.fsutil import atomic_write_path
from rdcl.inference import Predictor

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "aoti")
"""Values of ``export_model(fmt=...)``."""


class ExportCheckError(RdclInputError):
    """The exported file did not reproduce the eager predictor (the file was not kept)."""


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote: the path, its format, metadata and the check outcome."""

    path: Path
    fmt: str
    meta: dict[str, Any]
    check: CheckResult


def load_predictor(model: str | Path, *, device: str = "cpu", **options: Any) -> tuple[Any, dict]:
    """``(Predictor, checkpoint header)`` of a checkpoint or a finished run folder's
    ``final.ckpt`` (the header holds kind and method)."""
    model = find_checkpoint(model)
    header = load_checkpoint(model)
    predictor = Predictor.from_checkpoint(model, device=device, **options)
    return predictor, {"kind": header["kind"], "config": header["config"]}


def export_model(
    model: str | Path,
    out: str | Path,
    *,
    device: str = "cpu",
    fmt: str = "torchscript",
    step: float = 0.5,
    tile_batch: int = 4,
    mirror: bool = False,
    overwrite: bool = False,
    check_path: str | Path | None = None,
) -> ExportResult:
    """Export the checkpoint ``model`` to ``out`` and check it (see ``docs/export.md``).

    Raises FileExistsError (``out`` exists, no ``overwrite``), ValueError for a bad format or
    checkpoint, :class:`ExportCheckError` when the reloaded file disagrees with the eager
    predictor (nothing is written then).
    """
    if fmt not in FORMATS:
        raise RdclInputError(f"format must be one of {FORMATS}, found {fmt!r}")
    out = Path(out)
    if out.exists() and (out.is_dir() or not overwrite):
        what = "a folder" if out.is_dir() else "a file (pass --overwrite to replace it)"
        raise FileExistsError(f"output {out} exists and is {what}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder not found: {out.parent}")
    predictor, header = load_predictor(
        model, device=device, step=step, tile_batch=tile_batch, mirror=mirror
    )
    return export_predictor(
        predictor,
        out,
        kind=header["kind"],
        config=header["config"],
        fmt=fmt,
        check_path=check_path,
    )


def export_predictor(
    predictor: Any,
    out: str | Path,
    *,
    kind: str,
    config: dict[str, Any],
    fmt: str = "torchscript",
    check_path: str | Path | None = None,
) -> ExportResult:
    """Export an eager :class:`rdcl.inference.Predictor` to ``out`` (atomic, checked)."""
    out = Path(out)
    meta = build_metadata(predictor, kind=kind, method=config.get("train", {}).get("method"))
    suffix = ".pt2" if fmt == "aoti" else out.suffix
    checked: list[CheckResult] = []

    def write(tmp: Path) -> None:
        image, geometry, desc = check_input(predictor, check_path)
        export = _export_torchscript if fmt == "torchscript" else _export_aoti
        result = export(predictor, tmp, meta, config, image, geometry, desc)
        if not result.passed:
            raise ExportCheckError(result.message + f"; {out} was not written")
        checked.append(result)

    atomic_write_path(out, write, suffix=suffix)
    result = checked[0]
    logger.info("%s", result.message)
    return ExportResult(out, fmt, meta, result)


def _export_torchscript(
    predictor: Any,
    tmp: Path,
    meta: dict,
    config: dict,
    image: np.ndarray,
    geometry: Geometry,
    desc: str,
) -> CheckResult:
    save_scripted(build_scripted(predictor), tmp, meta, config)
    loaded = torch.jit.load(str(tmp), map_location=predictor.device)

    def run(img: np.ndarray, geom: Geometry) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        sp = torch.tensor(geom.spacing, dtype=torch.float64)
        return loaded.probabilities(x, sp).cpu().numpy()

    return compare(predictor, run, image, geometry, desc, what="exported TorchScript")


def _export_aoti(
    predictor: Any,
    tmp: Path,
    meta: dict,
    config: dict,
    image: np.ndarray,
    geometry: Geometry,
    desc: str,
) -> CheckResult:
    compile_network(predictor, tmp, meta, config)
    compiled = load_network(tmp, predictor.device)
    twin = predictor.with_network(compiled)
    return compare(
        predictor,
        lambda img, geom: twin.predict_probabilities(img, geom),
        image,
        geometry,
        desc,
        what="AOTInductor network",
    )
