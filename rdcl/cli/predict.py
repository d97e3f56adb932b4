"""``rdcl predict`` (model -> masks) and ``rdcl evaluate`` (masks vs ground truth -> scores)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rdcl.cli.common import Command, add_overwrite, positive_int
from rdcl.errors import RdclInputError
from rdcl.formats.run_folder import find_checkpoint
from rdcl.paths import require_dir, require_file, require_path

logger = logging.getLogger(__name__)


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
        help="a checkpoint (.ckpt), a finished training run folder (uses its final.ckpt), or "
        "a file written by rdcl export (.ts TorchScript predictor, .pt2 AOTInductor network)",
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
    p.add_argument(
        "--window", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="intensity convention of the input: LOW..HIGH corresponds to the training window "
        "(e.g. 0 255 for a radiopaedia volume of COVID-19-CT-Seg with a HU model); default: the "
        "training convention, or each case's own for published names (coronacases_org_*, "
        "radiopaedia_org_*)",
    )  # fmt: skip
    p.add_argument(
        "--report", type=Path, metavar="QUANT.csv",
        help="write per-case infection volume (mL), lesion count and, with --lung-mask, lung "
        "volume and %% infected, as CSV and as JSON beside it (QUANT.json)",
    )  # fmt: skip
    p.add_argument(
        "--lung-mask", metavar="FILE_OR_DIR|auto",
        help="lung mask(s) for --report: a file (single input), a folder of masks named like "
        "the inputs (each binary, on its input's grid, non-empty, holding most of the predicted "
        "infection; checked before any prediction), or 'auto' for an approximate HU-threshold "
        "lung mask (< -400 HU)",
    )  # fmt: skip


def _run_predict(args: argparse.Namespace) -> int:
    from rdcl.data.io import is_dicom_folder, is_image_file
    from rdcl.inference import output_name
    from rdcl.inference.conventions import check_window

    src, dst = args.input, args.output
    require_path(src, "input")
    require_dir(src, "input folder") if src.is_dir() else require_file(src, "input")
    folder = src.is_dir() and not is_dicom_folder(src)
    if folder and dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"-o must be a folder when -i is a folder, found a file: {dst}")
    if not folder:
        if dst.is_dir():
            dst = dst / output_name(src.name if src.is_file() else f"{src.name}.nii.gz")
        if not is_image_file(dst):
            raise RdclInputError(
                f"-o {dst} must end with an image suffix (.nii.gz, .nrrd, .png, ...)"
            )
        if dst.exists() and not args.overwrite:
            raise FileExistsError(f"output exists (pass --overwrite to replace it): {dst}")
    window = check_window(args.window) if args.window is not None else None
    quant = None
    if args.report is not None:
        from rdcl.inference.quantifier import Quantifier

        quant = Quantifier(args.report, args.lung_mask, folder=folder, overwrite=args.overwrite)
    if args.lung_mask is not None and quant is None:
        raise RdclInputError("--lung-mask needs --report QUANT.csv")
    if quant is not None:  # every lung mask is checked before the first prediction
        if folder:
            quant.check_inputs(sorted(p for p in src.iterdir() if p.is_file() and is_image_file(p)))
        else:
            quant.check_inputs([src])
    predictor = _load_predictor(args)
    on_mask = quant.add if quant is not None else None
    if folder:
        written = predictor.predict_folder(
            src,
            dst,
            overwrite=args.overwrite,
            suffix=args.suffix,
            progress=not args.quiet,
            window=window,
            on_mask=on_mask,
        )
        logger.info("wrote %d masks to %s", len(written), dst)
    else:
        predictor.predict_file(src, dst, overwrite=args.overwrite, window=window, on_mask=on_mask)
        logger.info("wrote %s", dst)
    if quant is not None:
        csv_path, json_path = quant.write()
        logger.info("wrote %s and %s", csv_path, json_path)
    return 0


def _load_predictor(args: argparse.Namespace):
    """The predictor behind ``-m``: an exported file, or a checkpoint / run folder."""
    from rdcl.inference import Predictor
    from rdcl.inference.exported import is_exported, load_exported

    if is_exported(args.model):
        fixed = {"--step": args.step != 0.5, "--tile-batch": args.tile_batch != 4}
        fixed.update({"--mirror": args.mirror, "--amp": args.amp is not None})
        given = [k for k, v in fixed.items() if v]
        if given:
            raise RdclInputError(
                f"{', '.join(given)}: the sliding-window settings of an exported model are fixed "
                f"at export (rdcl export {given[0]} ...); expected none with -m {args.model}"
            )
        return load_exported(args.model, device=args.device)
    return Predictor.from_checkpoint(
        find_checkpoint(args.model, what="model"),
        device=args.device,
        step=args.step,
        tile_batch=args.tile_batch,
        mirror=args.mirror,
        amp=args.amp,
    )


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
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads >= 1 (default: all)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score a label without a prediction as an empty mask (marked in the table and the "
        "CSV) instead of stopping with an error",
    )
    add_overwrite(p, "the CSV file")


def _run_evaluate(args: argparse.Namespace) -> int:
    from rdcl.metrics.evaluate import evaluate_folders, format_results

    for path, flag in ((args.pred, "--pred"), (args.gt, "--gt")):
        require_path(path, flag)
        require_dir(path, flag) if path.is_dir() else require_file(path, flag)
    from rdcl.device import resolve_device

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
        allow_missing=args.allow_missing,
    )
    sys.stdout.write(format_results(rows, tolerance_mm=args.tolerance))
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
            "0/255 both work). Every label needs exactly one prediction: a missing or ambiguous\n"
            "one (e.g. both x and x_0000) is an error; --allow-missing scores a missing\n"
            "prediction as an empty mask and marks it in the table."
        ),
    ),
)
