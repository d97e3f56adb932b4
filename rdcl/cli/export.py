"""``rdcl export``: a trained model -> one checked predictor file (see docs/export.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rdcl.cli.common import Command, add_overwrite
from rdcl.errors import RdclInputError
from rdcl.formats.run_folder import find_checkpoint

logger = logging.getLogger(__name__)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-m", "--model", required=True, type=Path, metavar="RUN_OR_CKPT",
        help="a finished training run folder (uses its final.ckpt) or a checkpoint (.ckpt)",
    )  # fmt: skip
    p.add_argument(
        "--out", required=True, type=Path, metavar="MODEL.ts",
        help="the file to write (TorchScript .ts, or .pt2 with --format aoti)",
    )  # fmt: skip
    p.add_argument(
        "--device", default="cpu",
        help="device to trace and check on: cpu (default) or cuda; the file runs on either",
    )  # fmt: skip
    p.add_argument(
        "--format", dest="fmt", choices=("torchscript", "aoti"), default="torchscript",
        help="torchscript: the whole predictor (default); aoti: the network via torch.export + "
        "AOTInductor (.pt2, needs a C++ compiler)",
    )  # fmt: skip
    p.add_argument("--step", type=float, default=0.5, help="tile step / patch (default 0.5)")
    p.add_argument("--tile-batch", type=int, default=4, help="tiles per forward (default 4)")
    p.add_argument("--mirror", action="store_true", help="average over flips (test-time aug.)")
    p.add_argument(
        "--check-input", type=Path, metavar="IMAGE",
        help="image to compare the export with the eager predictor on (default: a synthetic "
        "CT phantom at a spacing other than the training spacing)",
    )  # fmt: skip
    add_overwrite(p, "the output file")


def _run_export(args: argparse.Namespace) -> int:
    from rdcl.device import resolve_device
    from rdcl.export import export_model

    if not 0.0 < args.step <= 1.0:
        raise RdclInputError(f"--step must be in (0, 1], found {args.step}")
    if args.tile_batch < 1:
        raise RdclInputError(f"--tile-batch must be >= 1, found {args.tile_batch}")
    if args.fmt == "aoti" and args.out.suffix != ".pt2":
        raise RdclInputError(
            f"--format aoti writes a .pt2 package; expected --out *.pt2, found {args.out}"
        )
    if args.fmt == "torchscript" and args.out.suffix not in (".ts", ".pt"):
        raise RdclInputError(f"expected --out ending in .ts (or .pt), found {args.out}")
    if args.check_input is not None and not args.check_input.exists():
        raise FileNotFoundError(f"--check-input not found: {args.check_input}")
    device = str(resolve_device(args.device))
    result = export_model(
        find_checkpoint(args.model, what="model"),
        args.out,
        device=device,
        fmt=args.fmt,
        step=args.step,
        tile_batch=args.tile_batch,
        mirror=args.mirror,
        overwrite=args.overwrite,
        check_path=args.check_input,
    )
    print(result.check.message)
    print(f"wrote {result.path} ({result.fmt}, {result.path.stat().st_size / 1e6:.1f} MB)")
    return 0


COMMANDS = (
    Command(
        "export",
        "export a trained model as one predictor file (TorchScript or AOTInductor)",
        _add_export,
        _run_export,
        description=(
            "Write ONE file that holds the whole predictor (normalisation, resampling, Gaussian\n"
            "sliding window, network, threshold), loadable from C++ (rdcl_predict) or Python\n"
            "without rdcl. The file is reloaded and compared with the eager predictor before\n"
            "success; a failed check writes nothing and exits 2. Contract: docs/export.md."
        ),
    ),
)
