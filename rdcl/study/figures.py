"""The study's figures: a box plot of per-case DSC/NSD per method, prediction overlays of the best
and worst test case per method (paper Fig. 3), training curves, and the relation matrices of the
rdcl network with their absolute differences at the start and end of stage 2 and over its
training (Fig. 4 and 5)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from rdcl.data.datasets.layout import load_case
from rdcl.data.io import read_image
from rdcl.demo.feature_relations import lesion_batch, network_relations
from rdcl.errors import RdclInputError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.inference.predictor import Predictor
from rdcl.model import build_network
from rdcl.report import (
    plot_loss_curves,
    plot_overlays,
    plot_relation_evolution,
    plot_relation_matrices,
)
from rdcl.report._files import save_figure_atomic
from rdcl.training.methods import build_for_method, get_method

if TYPE_CHECKING:
    from rdcl.data.datasets.spec import DatasetSpec

logger = logging.getLogger(__name__)


def plot_boxplots(rows: Sequence[Mapping], path: str | Path, *, tolerance_mm: float) -> Path:
    """One box per method of the per-case DSC (left) and NSD (right) over all folds' test cases.

    ``rows``: ``{"method", "dsc", "nsd", ...}``; NaN scores are left out. Returns ``path``.
    """
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    if not methods:
        raise RdclInputError("expected per-case scores of at least one method, found none")
    fig = Figure(figsize=(max(6.0, 1.1 * len(methods) + 3.0), 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, title in zip(
        axes, ("dsc", "nsd"), ("DSC", f"NSD@{tolerance_mm:g}mm"), strict=True
    ):
        data = []
        for m in methods:
            v = np.asarray([float(r[key]) for r in rows if r["method"] == m], dtype=np.float64)
            data.append(v[np.isfinite(v)])
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title} per test case")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    return save_figure_atomic(fig, path)


def best_worst(rows: Sequence[Mapping], method: str) -> tuple[Mapping, Mapping] | None:
    """The (best, worst) row of ``method`` by DSC (NaN left out); None when it has none."""
    mine = [r for r in rows if r["method"] == method and math.isfinite(float(r["dsc"]))]
    if not mine:
        return None
    ordered = sorted(
        mine,
        key=lambda r: (float(r["dsc"]), int(r["fold"]), _seed_key(r), str(r["case"])),
    )
    return ordered[-1], ordered[0]


def _seed_key(row: Mapping) -> int:
    seed = row.get("seed")
    return -1 if seed is None else int(seed)


def plot_best_worst(
    rows: Sequence[Mapping],
    spec: DatasetSpec,
    run_dir: Callable[[str, int, int | None], Path],
    out_dir: Path,
) -> dict[str, Path]:
    """Overlays of each method's best and worst test case (by DSC); caption -> PNG path.

    ``run_dir(method, fold, seed)`` gives the run folder holding ``predictions/<case>.nii.gz``
    (``seed`` is the row's ``"seed"``, None when it has none); ``spec`` is the COVID dataset the
    cases come from.
    """
    cases = {c.name: c for c in spec.cases}
    out: dict[str, Path] = {}
    for method in dict.fromkeys(str(r["method"]) for r in rows):
        picked = best_worst(rows, method)
        if picked is None:
            continue
        for which, r in zip(("best", "worst"), picked, strict=True):
            case = cases[r["case"]]
            image, gt, geometry = load_case(case)
            fold, seed = int(r["fold"]), r.get("seed")
            run = run_dir(method, fold, seed)
            pred = read_image(run / "predictions" / f"{case.name}.nii.gz")[0]
            where = f"fold {fold + 1}" if seed is None else f"fold {fold + 1}, seed {seed}"
            name = f"{method}: {which} case {case.name} ({where}, DSC {float(r['dsc']):.3f})"
            out[name] = plot_overlays(
                image,
                gt,
                pred,
                out_dir / f"overlay_{method}_{which}.png",
                title=name,
                window=case.window,
                spacing=geometry.spacing,
            )
    return out


def plot_curves(logs: Mapping[str, Path], path: Path) -> Path | None:
    """Training curves of the runs whose ``log.jsonl`` exists; None when there is none."""
    present = {k: v for k, v in logs.items() if Path(v).is_file()}
    return plot_loss_curves(present, path) if present else None


def relation_snapshots(
    rdcl_ckpt: Path,
    pretrain_ckpt: Path,
    covid_spec: DatasetSpec,
    general_root: Path | DatasetSpec,
    n: int,
) -> dict[str, dict[str, np.ndarray]]:
    """R_G(X_n), R_G(X_c), R_T(X_c) at the start of stage 2 and at its end.

    "start": the rdcl network as stage 2 builds it before its first step (G from stage 1, T and D
    at the run's seeded initialisation); "end": the trained weights of ``rdcl_ckpt``. X_c are the
    first ``n`` cases of ``covid_spec`` (the fold's training cases), X_n the first ``n`` of
    ``general_root``, each patch centred on its lesion and preprocessed as in training.
    """
    import torch

    end = Predictor.from_checkpoint(rdcl_ckpt, device="cpu")
    x_c = lesion_batch(covid_spec, end, n)
    x_n = lesion_batch(general_root, Predictor.from_checkpoint(pretrain_ckpt, device="cpu"), n)
    torch.manual_seed(end.config.train.seed)
    start = build_for_method(
        end.config.model, get_method("rdcl"), load_checkpoint(pretrain_ckpt)["model"]
    ).eval()
    return {
        "start": network_relations(start, x_n, x_c),
        "end": network_relations(end.network, x_n, x_c),
    }


def relation_series(
    snapshots: Sequence[Path],
    pretrain_ckpt: Path,
    covid_spec: DatasetSpec,
    general_root: Path | DatasetSpec,
    n: int,
) -> dict[int, dict[str, np.ndarray]]:
    """R_G(X_n), R_G(X_c), R_T(X_c) at each kept training step (``train.snapshots``): step ->
    matrices, the batches as in :func:`relation_snapshots` (the same X_c and X_n at every step)."""
    if not snapshots:
        return {}
    last = Predictor.from_checkpoint(snapshots[-1], device="cpu")  # preprocessing of the run
    x_c = lesion_batch(covid_spec, last, n)
    x_n = lesion_batch(general_root, Predictor.from_checkpoint(pretrain_ckpt, device="cpu"), n)
    net = build_network(last.config.model, kind=get_method("rdcl").kind)
    out = {}
    for path in snapshots:
        ckpt = load_checkpoint(path)
        net.load_state_dict(ckpt["model"])
        out[int(ckpt["step"])] = network_relations(net, x_n, x_c)
    return dict(sorted(out.items()))


def plot_relation_snapshots(snapshots: Mapping[str, Mapping], out_dir: Path) -> dict[str, Path]:
    """One Fig. 4/5-style PNG per snapshot (``relations_<label>.png``); caption -> path."""
    return {
        f"Relation matrices and absolute differences, {label} of stage 2 (rdcl, fold 1)": (
            plot_relation_matrices(dict(m), out_dir / f"relations_{label}.png")
        )
        for label, m in snapshots.items()
    }


def plot_relation_series(series: Mapping[int, Mapping], out_dir: Path) -> dict[str, Path]:
    """The relation matrices over training (``relations_training.png``); caption -> path, empty
    when fewer than two steps were kept."""
    if len(series) < 2:
        return {}
    path = plot_relation_evolution({k: dict(v) for k, v in series.items()},
                                   out_dir / "relations_training.png")  # fmt: skip
    return {"Relation matrices and absolute differences over stage 2 (rdcl, fold 1)": path}
