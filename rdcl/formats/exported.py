"""Exported predictor files (``rdcl export``): the metadata every one carries (``rdcl.json`` and
``config.json``), and opening a file with its metadata checked (:func:`load_torchscript` for a
``.ts`` file, :func:`load_package` for an AOTInductor ``.pt2`` package).

Both metadata files are JSON, stored as TorchScript ``_extra_files`` (the archive's ``extra/``
folder) or as AOTInductor package metadata (``rdcl_json``, ``config_json``), so that any reader
(C++, Python without rdcl, a zip tool) finds the training configuration, spacing and intensity
convention. Keys: ``docs/export.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rdcl._version import __version__
from rdcl.errors import RdclInputError

FORMAT = "rdcl-export/1"
"""The ``format`` tag of ``rdcl.json``."""

META_FILE = "rdcl.json"
CONFIG_FILE = "config.json"
METHODS = ("forward", "probabilities", "forward_window", "probabilities_window")
THRESHOLD = 0.5


def training_spacing(cfg: Any) -> tuple[float, ...] | None:
    """The resolved training spacing (mm) of a config, or None (no resampling; an unresolved
    ``"auto"`` predicts on the input's own grid, as
    :func:`rdcl.data.preprocessing.preprocess.preprocess_case` does)."""
    ts = cfg.data.target_spacing
    if ts is None or isinstance(ts, str):
        return None
    return tuple(float(t) for t in ts)


def intensity_convention(normalization: str, window: tuple[float, float]) -> str:
    """One sentence describing what the input intensities must be."""
    lo, hi = window
    units = "HU" if lo < -100 else "raw units"
    if normalization == "window":
        return f"{units}; window {lo:g}..{hi:g} mapped to [0, 1]"
    if normalization == "ct":
        return (
            f"{units}; clipped to the training foreground 0.5/99.5 percentiles and z-scored with "
            f"the training foreground mean/std (training window {lo:g}..{hi:g})"
        )
    return f"any linear scale; each image z-scored by itself (training window {lo:g}..{hi:g})"


def build_metadata(predictor: Any, *, kind: str, method: str | None) -> dict[str, Any]:
    """``rdcl.json`` for an :class:`rdcl.inference.Predictor` (settings as exported)."""
    cfg = predictor.config
    norm = predictor.normalization or cfg.data.normalization
    window = predictor.training_window
    stats = predictor.intensity
    return {
        "format": FORMAT,
        "rdcl_version": __version__,
        "torch_version": torch.__version__,
        "dim": cfg.model.dim,
        "kind": kind,
        "method": method,
        "patch_size": list(cfg.data.patch_size),
        "target_spacing": list(ts) if (ts := training_spacing(cfg)) else None,
        "normalization": norm,
        "training_window": list(window),
        "intensity": stats.to_dict() if stats is not None else None,
        "intensity_convention": intensity_convention(norm, window),
        "step": predictor.step,
        "tile_batch": predictor.tile_batch,
        "mirror": predictor.mirror,
        "threshold": THRESHOLD,
        "methods": list(METHODS),
        "network": "traced",
    }


def extra_files(meta: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """The ``_extra_files`` mapping written into the TorchScript archive."""
    return {
        META_FILE: json.dumps(meta, indent=2, sort_keys=True),
        CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True),
    }


def load_torchscript(
    path: str | Path, map_location: torch.device | str = "cpu"
) -> tuple[torch.jit.ScriptModule, dict[str, Any], dict[str, Any]]:
    """``(module, rdcl.json, config.json)`` of an exported ``.ts`` file.

    Raises ValueError when the file is not a TorchScript archive or lacks the rdcl metadata.
    """
    files = {META_FILE: "", CONFIG_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=map_location, _extra_files=files)
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RdclInputError(f"{path}: not a TorchScript file ({first})") from None
    meta, config = parse_metadata(str(path), files[META_FILE], files[CONFIG_FILE])
    return module, meta, config


def parse_metadata(where: str, meta_text: str, config_text: str) -> tuple[dict, dict]:
    """Parse and check the two JSON texts (ValueError naming ``where`` when they are not rdcl's)."""
    try:
        meta = json.loads(meta_text) if meta_text else {}
        config = json.loads(config_text) if config_text else {}
    except ValueError as exc:
        raise RdclInputError(f"{where}: unreadable rdcl export metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RdclInputError(
            f"{where}: expected an rdcl export ({META_FILE} with format {FORMAT!r}), "
            f"found {found!r}"
        )
    return meta, config


PACKAGE_LOGGER = "torch._inductor.package"
"""torch's logger that warns "Loading outdated pt2 file" for any package without its version
record (random bytes included) before the load fails; rdcl's own checks say what is wrong."""


@contextlib.contextmanager
def _quiet_package_log() -> Iterator[None]:
    """Hold back torch's package-loader warnings while a ``.pt2`` file is opened, so a bad file
    gives rdcl's one error line and nothing before it."""
    log = logging.getLogger(PACKAGE_LOGGER)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load_package(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, dict, dict]:
    """``(runner, rdcl.json, config.json)`` of an ``rdcl export --format aoti`` package."""
    try:
        with warnings.catch_warnings(), _quiet_package_log():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecation
            runner = torch._inductor.aoti_load_package(str(path))
        md = runner.get_metadata()
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RdclInputError(f"{path}: not a loadable AOTInductor package ({first})") from None
    meta, config = parse_metadata(str(path), md.get("rdcl_json", ""), md.get("config_json", ""))
    dev = torch.device(device)
    if dev.type != "cpu" and md.get("AOTI_DEVICE_KEY", "cpu") == "cpu":
        raise RdclInputError(f"{path} was compiled for the CPU; expected --device cpu")
    return runner, meta, config
