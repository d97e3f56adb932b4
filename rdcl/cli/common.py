"""Pieces shared by the subcommands: the command record, config options, path checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rdcl.paths import require_dir as _require_dir

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


def positive_int(text: str) -> int:
    """An argparse ``type`` for options that take an integer >= 1 (``--threads``,
    ``--nproc-per-node``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, found {text!r}")
    return value


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--overwrite`` flag."""
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} when it already exists"
    )


def resolve_config(args: argparse.Namespace, *, dim: int | None) -> Config:
    """The run config from ``--config``/``--preset`` (default: ``paper3d``/``paper2d`` by the
    data's dimensionality ``dim``) with the ``--set`` overrides applied; validated
    (:func:`rdcl.config.resolve_config`)."""
    from rdcl.config import resolve_config as _resolve_config

    return _resolve_config(args.config, args.preset, args.overrides, dim=dim)


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a readable folder, else FileNotFoundError, NotADirectoryError or
    PermissionError ("permission denied", never "not found"; see :mod:`rdcl.paths`)."""
    return _require_dir(path, what)
