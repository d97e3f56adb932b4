"""``rdcl synth`` (synthetic CT phantoms) and ``rdcl preprocess`` (dataset -> array cache)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rdcl.cli.common import (
    Command,
    add_config_arguments,
    add_overwrite,
    require_dir,
    resolve_config,
)
from rdcl.errors import RdclInputError
from rdcl.fsutil import check_out_dir, staged_dir

logger = logging.getLogger(__name__)


def _ints(text: str) -> tuple[int, ...]:
    """``"32,96,96"`` -> (32, 96, 96)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, found {text!r}"
        ) from None


def _floats(text: str) -> tuple[float, ...]:
    """``"2.5,0.8,0.8"`` -> (2.5, 0.8, 0.8)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, found {text!r}"
        ) from None


def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder")
    p.add_argument(
        "--kind", required=True, metavar="KIND",
        help="lesion kind: covid, tumour, nodule, effusion or mixed (non-COVID)",
    )  # fmt: skip
    p.add_argument("--cases", required=True, type=int, metavar="N", help="training cases")
    p.add_argument("--test", type=int, default=0, metavar="N", help="held-out cases (imagesTs)")
    p.add_argument("--dim", type=int, choices=(2, 3), default=3, help="2D slices or 3D volumes")
    p.add_argument("--shape", type=_ints, metavar="Z,Y,X", help="array shape (voxels)")
    p.add_argument("--spacing", type=_floats, metavar="Z,Y,X", help="voxel spacing (mm)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_overwrite(p, "the dataset folder")


def _run_synth(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise RdclInputError(f"--cases must be >= 1, found {args.cases}")
    if args.test < 0:
        raise RdclInputError(f"--test must be >= 0, found {args.test}")
    check_out_dir(args.out, overwrite=args.overwrite)
    from rdcl.data.synth import synthesize_dataset

    options = {k: getattr(args, k) for k in ("shape", "spacing") if getattr(args, k) is not None}
    synthesize_dataset(
        args.out,
        kind=args.kind,
        n_cases=args.cases,
        dim=args.dim,
        n_test=args.test,
        seed=args.seed,
        overwrite=args.overwrite,
        **options,
    )
    logger.info("wrote %d %s cases to %s", args.cases + args.test, args.kind, args.out)
    return 0


def _add_preprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, type=Path, metavar="CACHE", help="cache folder")
    add_config_arguments(p, default_note="default: paper3d or paper2d by the data")
    add_overwrite(p, "a non-empty cache folder")


def _run_preprocess(args: argparse.Namespace) -> int:
    from rdcl.data.datasets.layout import load_dataset
    from rdcl.data.preprocessing.preprocess import preprocess_dataset

    spec = load_dataset(require_dir(args.data, "dataset folder"))
    cfg = resolve_config(args, dim=spec.dim)
    data, out = args.data.resolve(), args.out.resolve()
    if out == data or out in data.parents:
        raise RdclInputError(
            f"--out {args.out} would delete the dataset {args.data} (the cache folder replaces "
            "--out); expected a cache folder outside the dataset"
        )
    with staged_dir(args.out, overwrite=args.overwrite, what="cache folder") as tmp:
        cached = preprocess_dataset(spec, cfg.data, tmp)
    logger.info("cached %d cases of %s in %s", len(cached), spec.name, args.out)
    return 0


COMMANDS = (
    Command(
        "synth",
        "write a synthetic CT dataset (nnU-Net raw layout)",
        _add_synth,
        _run_synth,
        description=(
            "Synthesise CT phantoms with lesion masks in the nnU-Net raw layout: body, ribs,\n"
            "lungs with vessels, and COVID-like or non-COVID lesions."
        ),
    ),
    Command(
        "preprocess",
        "resample and normalise a dataset into an array cache",
        _add_preprocess,
        _run_preprocess,
        description=(
            "Resample to the config's target spacing, normalise intensities and cache the\n"
            "arrays (one .npz per case plus stats.json) so that training never re-reads raw files."
        ),
    ),
)
