"""Pieces shared by the subcommands: the command record, config options, path checks."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rdcl.config import Config


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help, argument registration and handler (returns exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


def add_config_arguments(parser: argparse.ArgumentParser, *, default_note: str) -> None:
    """``--config FILE | --preset NAME`` plus repeatable ``--set section.key=value``."""
    group = parser.add_argument_group("configuration")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, metavar="FILE", help="JSON or YAML config file")
    source.add_argument(
        "--preset",
        metavar="NAME",
        help=f"named configuration: paper3d, paper2d, tiny3d, tiny2d ({default_note})",
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=0.005 (repeatable)",
    )


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--overwrite`` flag."""
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} when it already exists"
    )


def resolve_config(args: argparse.Namespace, *, dim: int | None) -> Config:
    """The run config from ``--config``/``--preset`` (default: ``paper3d``/``paper2d`` by the
    data's dimensionality ``dim``) with the ``--set`` overrides applied; validated."""
    from rdcl.config import load_config, preset

    if args.config is not None:
        cfg = load_config(args.config)
    else:
        cfg = preset(args.preset or ("paper2d" if dim == 2 else "paper3d"))
    cfg = cfg.override(args.overrides) if args.overrides else cfg
    if dim is not None and cfg.model.dim != dim:
        raise ValueError(
            f"the config describes a {cfg.model.dim}D network but the data is {dim}D; "
            f"choose a {dim}D config (e.g. --preset {'tiny2d' if dim == 2 else 'tiny3d'})"
        )
    return cfg


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a readable folder, else FileNotFoundError, NotADirectoryError or
    PermissionError ("permission denied", never "not found"; see :mod:`rdcl.paths`)."""
    from rdcl.paths import require_dir as _require_dir

    return _require_dir(path, what)


def check_out_dir(path: Path, *, overwrite: bool, what: str = "output folder") -> None:
    """Refuse a file, or a non-empty folder without ``overwrite`` (nothing is changed)."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{what} must be a folder, found a file: {path}")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{what} exists and is not empty (pass --overwrite): {path}")


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp folder to write into; on success it replaces ``out``.

    On any error the temp folder is removed and ``out`` is left exactly as it was, so a command
    that fails halfway writes nothing. Check ``out`` (see :func:`check_out_dir`) before.
    """
    from rdcl.data.io import new_dir_mode

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    new_dir_mode(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f"{tmp.name}-old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
