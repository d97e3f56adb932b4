"""``rdcl cv``: the paper's Tables II/III by cross-validation (:func:`rdcl.study.plan_cv`,
:func:`rdcl.study.run_cv`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rdcl.cli.common import Command, add_config_arguments

logger = logging.getLogger(__name__)


def _add_cv(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, metavar="COVID_DIR", help="COVID dataset")
    p.add_argument(
        "--general", action="extend", nargs="+", default=[], type=Path, metavar="DIR",
        help="non-COVID lesion dataset(s); each gets its own 'pretrain_<name>' row",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="CV_DIR", help="study folder")
    split = p.add_argument_group("split (one of)")
    split.add_argument(
        "--split", type=Path, metavar="FILE",
        help="split file, e.g. ../shared/splits/covid19_ct_seg_task1.json",
    )  # fmt: skip
    split.add_argument("--folds", type=int, metavar="K", help="make a seeded K-fold split")
    split.add_argument(
        "--train-per-fold", type=int, metavar="N", help="training cases per fold (with --folds)"
    )
    split.add_argument("--split-seed", type=int, default=0, help="seed of --folds (default 0)")
    p.add_argument(
        "--methods", nargs="+", metavar="NAME",
        help="rows to run: baseline, pretrain (all pretrain rows), pretrain_<set>, pretrain_all, "
        "multi_encoder, backbone, rdcl_g, rdcl (default: all)",
    )  # fmt: skip
    p.add_argument(
        "--fold", type=int, action="append", metavar="K",
        help="run only fold K (1-based, repeatable), e.g. one job-array task per fold",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=int, nargs="+", metavar="S",
        help="train every (method, fold) once per seed S (train.seed=S; stage 1 is shared); "
        "default: the configuration's train.seed alone. The runs of that seed keep the folder "
        "runs/<method>/fold_K, any other seed's go to fold_K_seed_S",
    )  # fmt: skip
    p.add_argument(
        "--stage1-only", action="store_true",
        help="only pre-train G (stage 1) for the selected methods, e.g. before a job array",
    )  # fmt: skip
    p.add_argument(
        "--launcher", metavar="CMD",
        help="command that runs each training run's '-m rdcl.study.unit UNIT.json' (default: "
        "this Python), e.g. 'torchrun --nproc_per_node=4'",
    )  # fmt: skip
    p.add_argument(
        "--report-only", action="store_true",
        help="train nothing: write tables and figures from the runs finished so far",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or auto")
    p.add_argument(
        "--tolerance", type=float, default=3.0, metavar="MM", help="NSD tolerance (default 3 mm)"
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="accept changed settings in an existing CV_DIR (finished runs are kept)",
    )  # fmt: skip
    add_config_arguments(p, default_note="passed to every rdcl train run")


def _run_cv(args: argparse.Namespace) -> int:
    from rdcl.study import StudyRunError, plan_cv, run_cv

    plan = plan_cv(
        args.data,
        args.out,
        general=args.general,
        split=args.split,
        folds=args.folds,
        train_per_fold=args.train_per_fold,
        split_seed=args.split_seed,
        methods=args.methods,
        fold=args.fold,
        seeds=args.seeds,
        stage1_only=args.stage1_only,
        launcher=args.launcher,
        report_only=args.report_only,
        device=args.device,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        config=args.config,
        preset=args.preset,
        overrides=args.overrides,
    )
    try:
        outcome = run_cv(plan)
    except StudyRunError as exc:
        print(f"rdcl cv: error: {exc} (rerun the same command to resume)", file=sys.stderr)
        return 1
    if outcome.report is None:
        logger.info("stage 1 ready: %s", ", ".join(str(p) for p in outcome.stage1) or "none needed")
    else:
        logger.info("report: %s", outcome.report)
    return 0


COMMANDS = (
    Command(
        "cv",
        "cross-validate the paper's methods (Tables II/III) over the folds of a split",
        _add_cv,
        _run_cv,
        description=(
            "Train every method on every fold (each run its own process, resumable;\n"
            "--seeds: once per seed), score the fold's test cases (DSC, NSD) and write the\n"
            "paper's tables (Markdown, CSV, JSON), paired comparisons (by training run:\n"
            "t-interval, Wilcoxon and t-test p; by case: bootstrap CI, Wilcoxon p) and figures\n"
            "into CV_DIR. Rerun the same command to resume; --fold K runs one fold."
        ),
    ),
)
