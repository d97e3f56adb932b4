"""``rdcl demo``: the whole method on synthetic CT, ending in a report
(:func:`rdcl.demo.run_demo`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rdcl.cli.common import Command, add_overwrite
from rdcl.fsutil import check_out_dir

logger = logging.getLogger(__name__)


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="report folder")
    add_overwrite(p, "the demo's outputs in a non-empty folder")
    p.add_argument("--seed", type=int, default=0, help="seed for the data and training (0)")
    p.add_argument("--fast", action="store_true", help="test-sized settings (well under 1 min)")


def _run_demo(args: argparse.Namespace) -> int:
    check_out_dir(args.out, overwrite=args.overwrite)
    from rdcl.demo import run_demo

    run_demo(
        args.out,
        overwrite=args.overwrite,
        seed=args.seed,
        fast=args.fast,
        progress=not args.quiet,
    )
    logger.info("report: %s", args.out / "report.md")
    return 0


COMMANDS = (
    Command(
        "demo",
        "run the whole method on synthetic CT and write a report",
        _add_demo,
        _run_demo,
        description=(
            "Synthesise a small COVID set and a non-COVID set, pre-train G, train the baseline\n"
            "and rdcl, evaluate both on held-out cases and write report.md with figures."
        ),
    ),
)
