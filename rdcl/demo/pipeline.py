"""``rdcl demo``: the whole method on synthetic CT in a few CPU minutes, ending in a report folder.

Steps (each timed, the timings go into the report):

1. synthesise a small 3D COVID set (training + held-out cases) and a non-COVID ``mixed`` set;
2. stage 1: pre-train the general encoder G (with a decoder) on the non-COVID set;
3. stage 2: train ``baseline`` (T + D on COVID only) and ``rdcl`` (Algorithm 1, G from stage 1);
4. predict the held-out cases (NIfTI masks with the inputs' geometry) and score DSC and NSD@3mm;
5. relation matrices R_G(X_n), R_G(X_c), R_T(X_c) of the trained rdcl network on a non-COVID and a
   COVID batch (paper Fig. 4 and 5);
6. export the trained rdcl model with ``rdcl export`` (checked against the eager predictor) to
   ``OUT/model/rdcl.ts``, the file the C++ app ``rdcl_predict`` runs;
7. figures and ``report.md``.

Output folder layout::

    OUT/report.md, OUT/figures/*.png, OUT/scores/{baseline,rdcl}.csv (per-case DSC, NSD, HD95, ASSD)
    OUT/data/{covid,noncovid}/   (nnU-Net raw layout)
    OUT/runs/{pretrain,baseline,rdcl}/   (config.json, log.jsonl, checkpoints)
    OUT/predictions/{baseline,rdcl}/CASE.nii.gz
    OUT/model/rdcl.ts   (the exported TorchScript predictor of the rdcl run)
    OUT/cache/   (preprocessed arrays shared by the runs)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rdcl.config import Config, TrainConfig, preset
from rdcl.data.io import channel_file_name, read_image
from rdcl.data.synth import synthesize_dataset
from rdcl.errors import RdclInputError
from rdcl.export import export_model
from rdcl.inference.predictor import Predictor
from rdcl.losses import describe_rampup
from rdcl.metrics.evaluate import evaluate_folders
from rdcl.report import (
    plot_loss_curves,
    plot_overlays,
    plot_relation_matrices,
    read_log,
    relation_differences,
    write_summary,
)
from rdcl.training import pretrain_general, run_training

from .feature_relations import relation_matrices

logger = logging.getLogger(__name__)

METHODS = ("baseline", "rdcl")
"""The methods the demo trains and compares."""

MODEL_DIR = "model"
"""Sub-folder of the report folder that holds the exported predictor ``rdcl.ts``."""

OWNED = ("report.md", "scores", "figures", "data", "runs", "cache", "predictions", "model")
"""The entries of the output folder that the demo writes (and replaces with ``overwrite``)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and step counts of one demo run.

    ``shape`` is (z, y, x) in voxels, ``spacing`` (z, y, x) in mm, ``patch`` the training patch.
    """

    n_train: int
    n_test: int
    n_general: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    patch: tuple[int, int, int]
    pretrain_steps: int
    steps: int
    rampup_steps: int


FULL = DemoSettings(
    n_train=6,
    n_test=4,
    n_general=8,
    shape=(32, 96, 96),
    spacing=(5.0, 1.6, 1.6),
    patch=(16, 32, 32),
    pretrain_steps=400,
    steps=1000,
    rampup_steps=300,
)
"""The default demo: about 2-3 minutes on 2 CPU cores."""

FAST = DemoSettings(
    n_train=3,
    n_test=2,
    n_general=3,
    shape=(16, 48, 48),
    spacing=(5.0, 1.6, 1.6),
    patch=(16, 32, 32),
    pretrain_steps=8,
    steps=12,
    rampup_steps=6,
)
"""The test-sized demo: the same pipeline in well under a minute."""


def demo_config(settings: DemoSettings, *, method: str, seed: int) -> Config:
    """The ``tiny3d`` preset with the demo's patch, step counts, method and seed.

    Augmentation is off and foreground oversampling is 0.66: with a few hundred steps, a tiny
    network on augmented patches (or mostly lesion-free ones) does not get past predicting
    background (measured with 600 baseline steps: DSC 0.03 with augmentation, 0.57 without).
    """
    base = preset("tiny3d")
    data = replace(
        base.data, patch_size=tuple(settings.patch), augment=False, foreground_oversample=0.66
    )
    train = replace(
        base.train,
        method=method,
        pretrain_steps=settings.pretrain_steps,
        steps=settings.steps,
        rampup_steps=settings.rampup_steps,
        checkpoint_every=max(settings.steps, settings.pretrain_steps),
        seed=seed,
        device="cpu",
    )
    return replace(base, data=data, train=train)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {out_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder {out_dir} exists and is not empty (pass --overwrite to replace "
                f"the demo's outputs in it)"
            )
        for name in OWNED:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


class _Timer:
    """Wall-clock seconds per named stage, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("demo: %s ...", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        logger.info("demo: %s done in %.1f s", name, self.seconds[name])


def _figures(
    out_dir: Path, covid: Path, logs: dict[str, Path], matrices: dict[str, np.ndarray]
) -> dict[str, Path]:
    """Overlays of each method on the held-out case with the most lesion, loss curves and
    relation matrices; returns caption -> PNG path."""
    figs = out_dir / "figures"
    labels = sorted((covid / "labelsTs").glob("*.nii.gz"))
    sizes = [int(np.count_nonzero(read_image(p)[0])) for p in labels]
    label = labels[int(np.argmax(sizes))]
    case = label.name[: -len(".nii.gz")]
    image, geometry = read_image(covid / "imagesTs" / channel_file_name(case))
    gt = read_image(label)[0]
    out: dict[str, Path] = {}
    for method in METHODS:
        pred = read_image(out_dir / "predictions" / method / label.name)[0]
        out[f"{method}: prediction vs ground truth ({case})"] = plot_overlays(
            image,
            gt,
            pred,
            figs / f"overlay_{method}.png",
            title=f"{method}, held-out case {case}",
            spacing=geometry.spacing,
        )
    out["Training curves"] = plot_loss_curves(logs, figs / "loss_curves.png")
    out["Relation matrices and their absolute differences (paper Fig. 4 and 5)"] = (
        plot_relation_matrices(matrices, figs / "relation_matrices.png")
    )
    return out


_REDUCTION_SUFFIX = {"sum": "", "row": " / C", "mean": " / C^2"}
"""How each ``train.relation_reduction`` divides the squared Frobenius norm, for the report."""


def relation_scale(log: Path, train: TrainConfig) -> str:
    """One report line on the relation terms' scale in an rdcl run's ``log.jsonl``: the weights,
    the reduction and the mean |L_G| / L_seg and |L_T| / L_seg over the last tenth of the steps."""
    rows = [
        r for r in read_log(log)
        if all(isinstance(r.get(k), int | float) for k in ("seg", "loss_g", "loss_t"))
        and r["seg"] > 0
    ]  # fmt: skip
    head = (
        f"Relation losses (rdcl): lambda_G = {train.lambda_g:g}, lambda_T = {train.lambda_t:g}, "
        f"reduction `{train.relation_reduction}` (squared Frobenius norm of Eq. 4-5"
        f"{_REDUCTION_SUFFIX[train.relation_reduction]}), ramped up over {describe_rampup(train)}"
    )
    if not rows:
        return head + "; no relation terms were logged."
    tail = rows[-max(1, len(rows) // 10) :]
    g = float(np.mean([abs(r["loss_g"]) / r["seg"] for r in tail]))
    t = float(np.mean([abs(r["loss_t"]) / r["seg"] for r in tail]))
    return (
        f"{head}. Over the last {len(tail)} logged steps |L_G| / L_seg = {g:.3g} and "
        f"|L_T| / L_seg = {t:.3g} (figure: training curves)."
    )


def general_health(log: Path) -> str:
    """One report line on G's bottleneck in a dual-encoder run's ``log.jsonl``: its effective
    rank and feature RMS (``g_rank``, ``g_rms``; ``rdcl.training.feature_stats``) at the first
    and the last step that logged them."""
    rows = [r for r in read_log(log)
            if all(isinstance(r.get(k), int | float) for k in ("g_rank", "g_rms"))]  # fmt: skip
    if not rows:
        return "G's bottleneck statistics (effective rank, feature RMS) were not logged."
    first, last = rows[0], rows[-1]
    return (
        f"G's bottleneck on the COVID batches (rdcl): effective rank {first['g_rank']:.1f} at "
        f"step {first['step']} and {last['g_rank']:.1f} at step {last['step']} (1 would be all "
        f"channels collapsed into one feature), feature RMS {first['g_rms']:.3g} -> "
        f"{last['g_rms']:.3g} (a fall would be G fading under weight decay; figure: training "
        'curves; docs/relation_weights.md, "Keeping G alive").'
    )


def _notes(
    settings: DemoSettings,
    seed: int,
    diffs: dict[str, np.ndarray],
    pred: Path,
    exported: tuple[Path, str],
) -> list:
    z, y, x = settings.shape
    model, check = exported
    diff_text = ", ".join(f"mean {name} = {d.mean():.4f}" for name, d in diffs.items())
    return [
        f"Synthetic 3D CT phantoms (`rdcl.data.synth`, seed {seed}): a COVID set of "
        f"{settings.n_train} training and {settings.n_test} held-out cases and a non-COVID "
        f"`mixed` set (tumours, nodules, effusion) of {settings.n_general} cases, each "
        f"{z}x{y}x{x} voxels at spacing {settings.spacing} mm (z, y, x).",
        f"Networks: the `tiny3d` preset, patch {settings.patch}, no augmentation, foreground "
        f"oversampling 0.66; stage 1 pre-trains G for {settings.pretrain_steps} steps on the "
        f"non-COVID set; `baseline` and `rdcl` then train {settings.steps} steps each on the "
        "COVID training cases. Per-case DSC, NSD, HD95 and ASSD: `scores/<method>.csv`.",
        f"Relation matrices of the trained rdcl network on a non-COVID and a COVID batch: "
        f"{diff_text}.",
        f"Example prediction (NIfTI, the input's geometry): `{pred.as_posix()}`.",
        f"Exported predictor (`rdcl export`, TorchScript, docs/export.md): `{model.as_posix()}`; "
        f"{check.removeprefix('check: ')}. Run it from C++ with "
        f"`rdcl_predict {model.as_posix()} INPUT.nii.gz OUTPUT.nii.gz` (from this folder), or "
        f"from Python with `rdcl predict -m {model.as_posix()} -i INPUT.nii.gz -o OUTPUT.nii.gz`.",
        "These are tiny networks trained for a few CPU minutes on synthetic data: the numbers "
        "show that the pipeline works end to end, not the paper's result.",
    ]


def run_demo(
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    seed: int = 0,
    fast: bool = False,
    progress: bool = True,
) -> Path:
    """Run the demo pipeline (module docstring) and return the report folder ``out_dir``.

    Args:
        out_dir: the output folder; must be absent or empty unless ``overwrite``.
        overwrite: replace the demo's outputs in an existing folder (other entries are kept).
        seed: seeds the synthetic data and every training run.
        fast: the test-sized settings (:data:`FAST`) instead of :data:`FULL`.
        progress: tqdm progress bars for training, prediction and evaluation.

    Raises:
        FileExistsError: ``out_dir`` is a file, or a non-empty folder without ``overwrite``
            (nothing is touched).
        RdclInputError: ``seed`` is not an integer >= 0 (before anything is written or logged).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RdclInputError(f"seed must be an integer >= 0, found {seed!r}")
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)

    settings = FAST if fast else FULL
    timer = _Timer()
    covid, general = out_dir / "data" / "covid", out_dir / "data" / "noncovid"
    runs, cache = out_dir / "runs", out_dir / "cache"

    with timer.stage("synthesise data"):
        common = {"dim": 3, "shape": settings.shape, "spacing": settings.spacing}
        synthesize_dataset(
            covid,
            kind="covid",
            n_cases=settings.n_train,
            n_test=settings.n_test,
            seed=seed,
            **common,
        )
        synthesize_dataset(
            general, kind="mixed", n_cases=settings.n_general, n_test=0, seed=seed + 1, **common
        )
    configs = {m: demo_config(settings, method=m, seed=seed) for m in METHODS}
    with timer.stage("pre-train G (non-COVID)"):
        pretrained = pretrain_general(
            configs["rdcl"], [general], runs / "pretrain", cache_dir=cache, progress=progress
        )
    checkpoints = {}
    for method in METHODS:
        with timer.stage(f"train {method}"):
            checkpoints[method] = run_training(
                configs[method],
                covid,
                [general],
                runs / method,
                cache_dir=cache,
                pretrained=pretrained if method != "baseline" else None,
                progress=progress,
            )
    scores = {}
    with timer.stage("predict + evaluate held-out cases"):
        for method, ckpt in checkpoints.items():
            pred_dir = out_dir / "predictions" / method
            Predictor.from_checkpoint(ckpt, device="cpu").predict_folder(
                covid / "imagesTs", pred_dir, progress=progress
            )
            scores[method] = evaluate_folders(
                pred_dir,
                covid / "labelsTs",
                tolerance_mm=3.0,
                csv_path=out_dir / "scores" / f"{method}.csv",
                progress=progress,
            )
    with timer.stage("relation matrices"):
        matrices = relation_matrices(
            checkpoints["rdcl"], pretrained, covid, general, configs["rdcl"].data.batch_size
        )
    with timer.stage("export rdcl model"):
        model_dir = out_dir / MODEL_DIR
        model_dir.mkdir(parents=True, exist_ok=True)
        exported = export_model(checkpoints["rdcl"], model_dir / "rdcl.ts", overwrite=True)
    with timer.stage("figures + report"):
        logs = {"G pre-training": runs / "pretrain" / "log.jsonl"}
        logs.update({m: c.parent / "log.jsonl" for m, c in checkpoints.items()})
        figures = _figures(out_dir, covid, logs, matrices)
        example = next(iter(sorted((out_dir / "predictions" / "rdcl").iterdir())))
        notes = _notes(
            settings,
            seed,
            relation_differences(matrices),
            example.relative_to(out_dir),
            (exported.path.relative_to(out_dir), exported.check.message),
        )
        notes.insert(2, relation_scale(logs["rdcl"], configs["rdcl"].train))
        notes.insert(3, general_health(logs["rdcl"]))
        write_summary(
            out_dir,
            scores=scores,
            figures=figures,
            timings=timer.seconds,
            config={m: c.to_dict() for m, c in configs.items()},
            notes=notes,
        )
    logger.info(
        "demo: report written to %s (%.1f s)", out_dir / "report.md", sum(timer.seconds.values())
    )
    return out_dir
