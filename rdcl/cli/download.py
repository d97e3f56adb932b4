"""``rdcl download`` (fetch, verify and prepare a public data set) and ``rdcl prepare`` (convert a
published layout already on disk into rdcl's native layout)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rdcl.cli.common import Command, add_overwrite

logger = logging.getLogger(__name__)

DATA_SETS = ("covid19-ct-seg", "msd-lung", "nsclc-effusion")
"""The names ``rdcl download``/``rdcl prepare`` know (``rdcl.data.datasets.download.SOURCES``,
``rdcl.data.datasets.prepare.PREPARERS``; listed here so that ``rdcl --help`` imports nothing
heavy)."""


def _checksum(text: str) -> tuple[str, str]:
    name, sep, hexsum = text.partition("=")
    if not sep or not name or not hexsum:
        raise argparse.ArgumentTypeError(f"expected FILE=HEX, found {text!r}")
    return name, hexsum


def _seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {text!r}")
    return value


def _mirror(text: str) -> str:
    """``--mirror``: a URL Python can fetch (:func:`rdcl.data.datasets.download.check_mirror`)."""
    from rdcl.data.datasets.download import DownloadError, check_mirror

    try:
        return check_mirror(text)
    except DownloadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help=f"data set: {', '.join(DATA_SETS)}")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR",
        help="download folder: DIR/archives (kept), DIR/raw (unpacked), DIR/prepared (native)",
    )  # fmt: skip
    p.add_argument(
        "--sha256", action="append", default=[], type=_checksum, metavar="FILE=HEX",
        help="expected SHA-256 of an archive (overrides the built-in table; repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--mirror", type=_mirror, metavar="URL",
        help="fetch the archives from URL/<file name> instead of the publisher's address",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds per network operation (> 0)"
    )
    add_overwrite(p, "the prepared data set")


class _Report:
    """What ``rdcl download`` shows while it works: a ``name: N of M MiB`` line per archive on
    stderr (none with ``-q``), then the archive's checksum at INFO."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._shown: tuple[str, int] | None = None

    def progress(self, name: str, done: int, total: int | None) -> None:
        if self.quiet or self._shown == (name, done >> 20):
            return
        self._shown = (name, done >> 20)
        of = f" of {total >> 20} MiB" if total else " MiB"
        print(f"\r{name}: {done >> 20}{of}", end="", file=sys.stderr, flush=True)

    def verified(self, archive: Path, digest: tuple[str, str]) -> None:
        if not self.quiet:
            print(file=sys.stderr)
        logger.info("verified %s (%s %s)", archive, *digest)


def _run_download(args: argparse.Namespace) -> int:
    from rdcl.data.datasets.download import PREPARED, download_dataset

    report = _Report(args.quiet)
    spec = download_dataset(
        args.name,
        args.out,
        sha256=dict(args.sha256),
        mirror=args.mirror,
        timeout=args.timeout,
        overwrite=args.overwrite,
        progress=report.progress,
        verified=report.verified,
    )
    logger.info("prepared %d cases in %s", len(spec.cases), args.out / PREPARED)
    return 0


def _add_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "layout", metavar="LAYOUT",
        help=f"published layout: {', '.join(DATA_SETS)}; 'msd-patches' (msd_lung_patches at "
        "2 mm); 'slices' (axial 2D lesion slices of any labelled 3D data set, for 2D studies); "
        "or 'native' (any layout rdcl reads as NIfTI, with --spacing for files without one)",
    )  # fmt: skip
    p.add_argument("--src", required=True, type=Path, metavar="DIR", help="the unpacked data")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="native-layout folder")
    p.add_argument(
        "--max-per-case", type=int, default=1, metavar="N",
        help="slices: lesion slices per 3D case, spread over the lesion (default 1, the largest)",
    )  # fmt: skip
    p.add_argument("--lesion", default="tumour", help="slices: lesion kind recorded (tumour)")
    p.add_argument(
        "--spacing", type=float, nargs="+", metavar="MM",
        help="native: voxel size in mm, array order ((y, x) in 2D), of files that carry none "
        "(PNG, .npz patches)",
    )  # fmt: skip
    add_overwrite(p, "a non-empty output folder")


def _run_prepare(args: argparse.Namespace) -> int:
    from rdcl.data.datasets.prepare import prepare_layout

    spec = prepare_layout(
        args.layout,
        args.src,
        args.out,
        spacing=args.spacing,
        max_per_case=args.max_per_case,
        lesion=args.lesion,
        overwrite=args.overwrite,
    )
    logger.info("prepared %d cases in %s", len(spec.cases), args.out)
    return 0


COMMANDS = (
    Command(
        "download",
        "download, verify and prepare a public data set of the paper",
        _add_download,
        _run_download,
        description=(
            "Download the archives of NAME (resuming interrupted downloads), verify their\n"
            "SHA-256 (or published MD5), unpack them and convert them into rdcl's native\n"
            "layout in DIR/prepared. Archives without a known checksum need --sha256."
        ),
    ),
    Command(
        "prepare",
        "convert a published data set layout into rdcl's native layout",
        _add_prepare,
        _run_prepare,
        description=(
            "Convert COVID-19-CT-Seg, MSD Task06_Lung or NSCLC pleural effusion data already on\n"
            "disk into the nnU-Net raw layout with 0/1 labels and one intensity convention."
        ),
    ),
)
