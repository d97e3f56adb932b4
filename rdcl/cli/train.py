"""``rdcl demo`` (the whole method on synthetic CT) and ``rdcl train`` (both training stages)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rdcl.cli.common import (
    Command,
    add_config_arguments,
    add_overwrite,
    check_out_dir,
    require_dir,
    resolve_config,
)

logger = logging.getLogger(__name__)


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="report folder")
    add_overwrite(p, "the demo's outputs in a non-empty folder")


def _run_demo(args: argparse.Namespace) -> int:
    check_out_dir(args.out, overwrite=args.overwrite)
    from rdcl.demo import run_demo

    run_demo(args.out, overwrite=args.overwrite)
    logger.info("report: %s", args.out / "report.md")
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, type=Path, metavar="COVID_DIR",
        help="the target (COVID-19) dataset: nnU-Net/MSD raw layout or a published layout",
    )  # fmt: skip
    p.add_argument(
        "--general", action="extend", nargs="+", default=[], type=Path, metavar="DIR",
        help="non-COVID lesion dataset(s) for G (repeatable); needed by every method but baseline",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="run folder")
    add_config_arguments(p, default_note="default: paper3d or paper2d by the data")
    p.add_argument(
        "--method",
        help="baseline, pretrain, multi_encoder, backbone, rdcl_g or rdcl (default: the config's)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the config's)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue a stopped run in RUN_DIR")
    run.add_argument("--overwrite", action="store_true", help="start RUN_DIR's run again")


def _run_train(args: argparse.Namespace) -> int:
    from rdcl.data.layout import load_dataset

    covid = load_dataset(require_dir(args.data, "--data folder"))
    general = [load_dataset(require_dir(g, "--general folder")) for g in args.general]
    for g in general:
        if g.dim != covid.dim:
            raise ValueError(
                f"--general {g.root} is {g.dim}D but --data {covid.root} is {covid.dim}D"
            )
    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"train.method={args.method}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    args.overrides = overrides
    cfg = resolve_config(args, dim=covid.dim)
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {args.out}")
    from rdcl.training import run_training

    final = run_training(
        cfg,
        covid=covid,
        general=general,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    logger.info("trained model: %s", final)
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
    Command(
        "train",
        "train a model (stage 1: G on non-COVID lesions; stage 2: Algorithm 1)",
        _add_train,
        _run_train,
        description=(
            "Train on the COVID set (--data) together with non-COVID lesion sets (--general).\n"
            "RUN_DIR receives the resolved config, JSONL logs and atomic checkpoints; --resume\n"
            "continues a stopped run exactly."
        ),
    ),
)
