"""``rdcl train``: both training stages (:func:`rdcl.training.run.run_training`), or stage 1
alone (:func:`rdcl.training.run.run_pretraining`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rdcl.cli.common import (
    Command,
    add_config_arguments,
    positive_int,
    require_dir,
    resolve_config,
)
from rdcl.errors import RdclInputError
from rdcl.paths import require_file

logger = logging.getLogger(__name__)


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
    p.add_argument(
        "--nproc-per-node", type=positive_int, metavar="N",
        help="train with N data-parallel processes on this machine: checks the config and data "
        "once, then runs torchrun; its exit status and last line are rdcl's",
    )  # fmt: skip
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue a stopped run in RUN_DIR")
    run.add_argument("--overwrite", action="store_true", help="start RUN_DIR's run again")


def _run_train(args: argparse.Namespace) -> int:
    from rdcl.data.datasets.layout import load_dataset
    from rdcl.training.distributed import env_rank

    if env_rank() != 0:  # under torchrun rank 0 alone reports (rdcl.training.distributed)
        logging.getLogger("rdcl").setLevel(logging.WARNING)
        logging.getLogger("rdcl.cli").setLevel(logging.WARNING)

    covid = load_dataset(require_dir(args.data, "--data folder"))
    if args.cases is not None:
        from rdcl.data.datasets.subset import read_case_list, select_cases

        covid = select_cases(covid, read_case_list(args.cases))
    general = [require_dir(g, "--general folder") for g in args.general]
    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"train.method={args.method}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    args.overrides = overrides
    cfg = resolve_config(args, dim=covid.dim)  # the default preset follows the data
    if args.pretrained is not None:
        require_file(args.pretrained, "--pretrained checkpoint")
    if args.pretrain_only and args.pretrained is not None:
        raise RdclInputError("--pretrain-only trains stage 1 itself; expected no --pretrained")
    if args.nproc_per_node is not None:  # checked here once, then the ranks start
        from rdcl.cli.launch import check_rank_split, run_torchrun, strip_option
        from rdcl.training.distributed import launched_distributed
        from rdcl.training.methods import get_method
        from rdcl.training.plan import check_inputs, check_pretrained_use

        if launched_distributed():
            raise RdclInputError("--nproc-per-node starts torchrun itself; expected no torchrun")
        check_pretrained_use(get_method(cfg.train.method), args.pretrained)
        check_inputs(cfg, covid, [load_dataset(g) for g in general])  # each rank plans again
        check_rank_split(cfg.data.batch_size, args.nproc_per_node)
        return run_torchrun(args.nproc_per_node, strip_option(args.argv, "--nproc-per-node"))
    from rdcl.training.run import run_pretraining, run_training

    options = {
        "resume": args.resume,
        "overwrite": args.overwrite,
        "cache_dir": args.cache,
        "progress": not args.quiet,
    }
    if args.pretrain_only:
        final = run_pretraining(cfg, general, args.out, covid=covid, **options)
    else:
        final = run_training(cfg, covid, general, args.out, pretrained=args.pretrained, **options)
    logger.info("trained model: %s", final)
    return 0


COMMANDS = (
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
