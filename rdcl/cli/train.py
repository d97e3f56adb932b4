"""``rdcl demo`` (the whole method on synthetic CT) and ``rdcl train`` (both training stages)."""

from __future__ import annotations

import argparse
import logging
import shutil
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
    p.add_argument(
        "--pretrained", type=Path, metavar="CKPT",
        help="a stage-1 final.ckpt (G pre-trained on non-COVID lesions) instead of stage 1",
    )  # fmt: skip
    p.add_argument(
        "--cache", type=Path, metavar="DIR", help="preprocessing cache (default RUN_DIR/cache)"
    )
    p.add_argument(
        "--cases", type=Path, metavar="FILE",
        help="train on these --data cases only (names one per line, or a JSON list), e.g. one "
        "cross-validation fold",
    )  # fmt: skip
    p.add_argument(
        "--pretrain-only", action="store_true",
        help="run stage 1 only (G on --general) into RUN_DIR, e.g. to share it between runs",
    )  # fmt: skip
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue a stopped run in RUN_DIR")
    run.add_argument("--overwrite", action="store_true", help="start RUN_DIR's run again")


def _run_train(args: argparse.Namespace) -> int:
    from rdcl.data.layout import load_dataset
    from rdcl.training.distributed import env_rank

    main_rank = env_rank() == 0  # under torchrun rank 0 alone reports (rdcl.training.distributed)
    if not main_rank:
        logging.getLogger("rdcl").setLevel(logging.WARNING)
        logging.getLogger("rdcl.cli").setLevel(logging.WARNING)

    covid = load_dataset(require_dir(args.data, "--data folder"))
    if args.cases is not None:
        from rdcl.data.subset import select_cases
        from rdcl.study.splits import read_case_list

        covid = select_cases(covid, read_case_list(args.cases))
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
    from rdcl.inference.predictor import resolve_device

    resolve_device(cfg.train.device)  # a typo or a missing GPU: one line before any work
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {args.out}")
    if args.pretrained is not None:
        from rdcl.paths import require_file

        require_file(args.pretrained, "--pretrained checkpoint")
    from rdcl.training import run_training
    from rdcl.training.runlock import RunInUseError

    before = set(args.out.iterdir()) if args.out.is_dir() else None
    try:
        final = (_pretrain_only if args.pretrain_only else run_training)(
            cfg,
            covid,
            general,
            args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            cache_dir=args.cache,
            pretrained=args.pretrained,
            progress=not args.quiet,
        )
    except RunInUseError:  # the folder is another run's: touch nothing
        raise
    except BaseException:  # any failure before a checkpoint: the fresh folder goes again
        if main_rank:  # the folder is rank 0's
            _undo_fresh_run(args.out, before)
        raise
    logger.info("trained model: %s", final)
    return 0


def _pretrain_only(cfg, covid, general, out: Path, *, pretrained, **options) -> Path:
    """Stage 1 alone (``--pretrain-only``): G with a decoder on the non-COVID sets."""
    from rdcl.training import pretrain_general

    if pretrained is not None:
        raise ValueError("--pretrain-only trains stage 1 itself; expected no --pretrained")
    return pretrain_general(cfg, general, out, **options)


def _undo_fresh_run(out: Path, before: set[Path] | None) -> None:
    """Remove what a failed run created in ``out`` when it had not trained anything yet.

    ``before`` is the folder's content before the run (None: it did not exist). Nothing is
    removed once a checkpoint exists (it may be resumed) or from a folder that held files.
    """
    if before or not out.is_dir() or any(out.rglob("*.ckpt")):
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


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
