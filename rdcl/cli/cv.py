"""``rdcl cv``: the paper's Tables II/III by cross-validation (see :mod:`rdcl.study.runner`)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from rdcl.cli.common import Command, add_config_arguments, require_dir
from rdcl.errors import RdclInputError

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
        help="command that runs '-m rdcl train ...' (default: this Python), e.g. "
        "'torchrun --nproc_per_node=4'",
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


def _config_args(args: argparse.Namespace) -> list[str]:
    out = []
    if args.config is not None:
        out += ["--config", str(args.config.resolve())]
    if args.preset is not None:
        out += ["--preset", args.preset]
    for item in args.overrides:
        out += ["--set", item]
    return out


def _run_cv(args: argparse.Namespace) -> int:
    import math

    from rdcl.cli.launch import check_rank_split, launcher_ranks
    from rdcl.data.layout import load_dataset
    from rdcl.study.rows import study_rows
    from rdcl.study.runner import (
        StudyPlan,
        StudyRunError,
        check_launcher,
        check_study_data,
        prepare_study,
        resolve_split,
        run_stage1,
        run_study,
        unit_name,
        verify_finished,
    )

    if (args.folds is None) != (args.train_per_fold is None):
        raise RdclInputError("--folds and --train-per-fold go together; expected both or neither")
    if args.split is not None and args.folds is not None:
        raise RdclInputError("expected --split FILE or --folds K --train-per-fold N, found both")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise RdclInputError(
            f"--tolerance must be a finite distance >= 0 mm, found {args.tolerance}"
        )
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {args.out}")
    spec = load_dataset(require_dir(args.data, "--data folder"))
    for g in args.general:
        if not g.exists():
            raise FileNotFoundError(f"--general dataset not found: {g}")
    cfg_args = _config_args(args)
    # The configuration must fit the data before any run starts (one line, not a child's error).
    from rdcl.cli.common import resolve_config
    from rdcl.training.run import check_inputs

    cfg = resolve_config(args, dim=spec.dim)
    # as every run checks them: the device (cv's --device is each run's; a report trains nothing)
    # and the data's dimensions
    device = "cpu" if args.report_only else args.device
    check_inputs(
        cfg.override([f"train.device={device}"]),
        spec,
        [load_dataset(require_dir(g, "--general folder")) for g in args.general],
    )
    seeds = None
    if args.seeds is not None:
        bad = [s for s in args.seeds if s < 0]
        if bad:
            raise RdclInputError(f"--seeds takes seeds >= 0, found {bad[0]}")
        seeds = list(dict.fromkeys(args.seeds))
    rows = study_rows(args.general, args.methods)
    split = resolve_split(
        [c.name for c in spec.cases],
        args.out,
        split_file=args.split,
        folds=args.folds,
        train_per_fold=args.train_per_fold,
        seed=args.split_seed,
    )
    folds = None
    if args.fold:
        bad = [k for k in args.fold if not 1 <= k <= len(split.folds)]
        if bad:
            raise RdclInputError(
                f"--fold {bad[0]} is outside the split's folds 1..{len(split.folds)}"
            )
        folds = sorted({k - 1 for k in args.fold})
    plan = StudyPlan(
        data=args.data,
        general=list(args.general),
        out=args.out,
        rows=rows,
        split=split,
        config_args=cfg_args,
        folds=folds,
        device=args.device,
        tolerance_mm=args.tolerance,
        quiet=True,
        seeds=seeds,
        default_seed=cfg.train.seed,
    )
    if args.launcher is not None:
        try:
            plan.launcher = shlex.split(args.launcher)
        except ValueError as exc:  # an unbalanced quote
            raise RdclInputError(
                f"--launcher {args.launcher!r} cannot be split into words ({exc}); expected a "
                "command such as 'torchrun --nproc_per_node=4'"
            ) from None
        check_launcher(plan.launcher)
        ranks = launcher_ranks(plan.launcher)
        if ranks is not None:  # as 'rdcl train --nproc-per-node' checks it, before any run
            check_rank_split(cfg.data.batch_size, ranks, option=f"--launcher {args.launcher!r}")
    if not args.report_only:  # every case read once, before the study folder is written
        check_study_data(plan, spec)
    for row in rows:  # the tables come from the finished runs: their checkpoints must be sound
        for k in range(len(split.folds)):
            for seed in plan.seeds_of(row.name):
                run = plan.run_dir(row.name, k, seed)
                if (run / "scores.csv").is_file():
                    verify_finished(run / "final.ckpt", unit_name(plan, row.name, k, seed))
    prepare_study(plan, overwrite=args.overwrite)
    if not args.report_only:
        try:
            if args.stage1_only:
                done = run_stage1(plan)
                logger.info("stage 1 ready: %s", ", ".join(str(p) for p in done) or "none needed")
                return 0
            run_study(plan, spec)
        except StudyRunError as exc:
            print(f"rdcl cv: error: {exc} (rerun the same command to resume)", file=sys.stderr)
            return 1
    from rdcl.study.outputs import write_study_report

    report = write_study_report(plan, spec)
    logger.info("report: %s", report)
    return 0


COMMANDS = (
    Command(
        "cv",
        "cross-validate the paper's methods (Tables II/III) over the folds of a split",
        _add_cv,
        _run_cv,
        description=(
            "Train every method on every fold (each run one 'rdcl train' process, resumable;\n"
            "--seeds: once per seed), score the fold's test cases (DSC, NSD) and write the\n"
            "paper's tables (Markdown, CSV, JSON), paired comparisons (by training run:\n"
            "t-interval, Wilcoxon and t-test p; by case: bootstrap CI, Wilcoxon p) and figures\n"
            "into CV_DIR. Rerun the same command to resume; --fold K runs one fold."
        ),
    ),
)
