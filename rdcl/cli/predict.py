"""``rdcl predict`` (model -> masks) and ``rdcl evaluate`` (masks vs ground truth -> scores)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from rdcl.cli.common import Command, add_overwrite

logger = logging.getLogger(__name__)

METRICS = ("dsc", "nsd", "hd95", "assd")
"""Per-case columns printed by ``rdcl evaluate`` (``rdcl.metrics.evaluate`` rows)."""

RUN_CHECKPOINT = "final.ckpt"
"""The checkpoint ``-m RUN_DIR`` uses: the one ``rdcl train`` writes when it completes."""


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i", "--input", required=True, type=Path, metavar="FILE_OR_DIR",
        help="image file (NIfTI, NRRD, MHA, PNG), DICOM series folder, or a folder of images",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", required=True, type=Path, metavar="FILE_OR_DIR",
        help="mask file (its suffix picks the format; PNG masks are 0/255, others 0/1), or a "
        "folder for folder input (names drop nnU-Net's _0000 channel suffix when all have it)",
    )  # fmt: skip
    p.add_argument(
        "-m", "--model", required=True, type=Path, metavar="MODEL",
        help="a checkpoint (.ckpt) or a finished training run folder (uses its final.ckpt)",
    )  # fmt: skip
    add_overwrite(p, "output masks")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--step", type=float, default=0.5, help="tile step / patch (default 0.5)")
    p.add_argument("--tile-batch", type=int, default=4, help="tiles per forward (default 4)")
    p.add_argument("--mirror", action="store_true", help="average over flips (test-time aug.)")
    p.add_argument("--amp", choices=("fp16", "bf16"), help="autocast precision (CUDA)")
    p.add_argument(
        "--suffix", metavar=".EXT", help="output suffix for folder input (default: the input's)"
    )


def resolve_model(path: Path) -> Path:
    """The checkpoint behind ``-m``: the file itself, or :data:`RUN_CHECKPOINT` in a run folder."""
    if path.is_dir():
        final = path / RUN_CHECKPOINT
        if final.is_file():
            return final
        last = path / "last.ckpt"
        hint = f"; the run has not finished, pass -m {last} to use its latest weights"
        raise FileNotFoundError(
            f"no checkpoint in run folder {path}: expected {RUN_CHECKPOINT}"
            + (hint if last.is_file() else "")
        )
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    return path


def _is_series_dir(path: Path) -> bool:
    from rdcl.data.io import is_image_file

    files = [p for p in path.iterdir() if p.is_file()]
    return not any(is_image_file(p) for p in files) and any(
        p.suffix.lower() in (".dcm", "") for p in files
    )


def _run_predict(args: argparse.Namespace) -> int:
    from rdcl.data.io import is_image_file
    from rdcl.inference import Predictor, output_name

    src, dst = args.input, args.output
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    folder = src.is_dir() and not _is_series_dir(src)
    if folder and dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"-o must be a folder when -i is a folder, found a file: {dst}")
    if not folder:
        if dst.is_dir():
            dst = dst / output_name(src.name if src.is_file() else f"{src.name}.nii.gz")
        if not is_image_file(dst):
            raise ValueError(f"-o {dst} must end with an image suffix (.nii.gz, .nrrd, .png, ...)")
        if dst.exists() and not args.overwrite:
            raise FileExistsError(f"output exists (pass --overwrite to replace it): {dst}")
    predictor = Predictor.from_checkpoint(
        resolve_model(args.model),
        device=args.device,
        step=args.step,
        tile_batch=args.tile_batch,
        mirror=args.mirror,
        amp=args.amp,
    )
    if folder:
        written = predictor.predict_folder(
            src, dst, overwrite=args.overwrite, suffix=args.suffix, progress=not args.quiet
        )
        logger.info("wrote %d masks to %s", len(written), dst)
    else:
        predictor.predict_file(src, dst, overwrite=args.overwrite)
        logger.info("wrote %s", dst)
    return 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, type=Path, metavar="FILE_OR_DIR", help="predictions")
    p.add_argument(
        "--gt", required=True, type=Path, metavar="FILE_OR_DIR", help="ground-truth masks"
    )
    p.add_argument("--csv", type=Path, metavar="FILE", help="write per-case scores as CSV")
    p.add_argument(
        "--tolerance", type=float, default=3.0, metavar="MM", help="NSD tolerance (default 3 mm)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    add_overwrite(p, "the CSV file")


def _run_evaluate(args: argparse.Namespace) -> int:
    from rdcl.metrics.evaluate import evaluate_folders, summarize

    for path, flag in ((args.pred, "--pred"), (args.gt, "--gt")):
        if not path.exists():
            raise FileNotFoundError(f"{flag} not found: {path}")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise ValueError(f"--tolerance must be a finite distance >= 0 mm, found {args.tolerance}")
    if args.csv is not None and args.csv.is_dir():
        raise IsADirectoryError(f"--csv must be a file path, found a folder: {args.csv}")
    if args.csv is not None and args.csv.exists() and not args.overwrite:
        raise FileExistsError(f"CSV exists (pass --overwrite to replace it): {args.csv}")
    from rdcl.inference.predictor import resolve_device

    device = resolve_device(args.device).type
    rows = evaluate_folders(
        args.pred,
        args.gt,
        tolerance_mm=args.tolerance,
        csv_path=args.csv,
        device=device,
        threads=args.threads,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = summarize(rows)
    tau = f"{args.tolerance:g}"
    out = sys.stdout
    out.write(f"case\tDSC\tNSD@{tau}mm\tHD95_mm\tASSD_mm\n")
    for row in rows:
        values = "\t".join(f"{row[k]:.4f}" for k in METRICS)
        out.write(f"{row['case']}\t{values}\n")
    for key, label in zip(METRICS, ("DSC", f"NSD@{tau}mm", "HD95_mm", "ASSD_mm"), strict=True):
        s = summary[key]
        extra = f", {s['n_inf']} infinite left out" if s.get("n_inf") else ""
        out.write(f"{label}: mean {s['mean']:.4f} +- {s['std']:.4f} (n={s['n']}{extra})\n")
    if args.csv is not None:
        logger.info("wrote %s", args.csv)
    return 0


COMMANDS = (
    Command(
        "predict",
        "segment CT images with a trained model",
        _add_predict,
        _run_predict,
        description=(
            "Segment an image, a DICOM series or a folder of images with a trained model.\n"
            "Masks keep each input's geometry (spacing, origin, direction)."
        ),
    ),
    Command(
        "evaluate",
        "score predicted masks against ground truth (DSC, NSD)",
        _add_evaluate,
        _run_evaluate,
        description=(
            "Per-case Dice (DSC), normalised surface Dice (NSD) at --tolerance mm, HD95 and ASSD\n"
            "(mm), then mean +- std over cases. Masks are matched by case name (a _0000\n"
            "channel suffix is ignored; tr_im_N <-> tr_mask_N and coronacases_org_N <->\n"
            "coronacases_N as in the published layouts); any non-zero voxel is lesion (0/1 and\n"
            "0/255 both work)."
        ),
    ),
)
