"""The study's outputs in ``CV_DIR``: the tables (:mod:`rdcl.study.paper_tables`), the figures
(:mod:`rdcl.study.figures`) and ``report.md`` linking them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rdcl.data.datasets.subset import select_cases
from rdcl.formats.run_folder import FINAL, SNAPSHOT_DIR
from rdcl.fsutil import write_text_atomic

from . import figures
from .paper_tables import write_tables
from .runner import StudyPlan, collect_scores, unit_name

if TYPE_CHECKING:
    from rdcl.data.datasets.spec import DatasetSpec

logger = logging.getLogger(__name__)

RELATION_BATCH = 4
"""Lesion-centred cases per batch for the relation-matrix figures."""


def _relation_figures(plan: StudyPlan, spec: DatasetSpec, fig_dir: Path) -> dict[str, Path]:
    row = next((r for r in plan.rows if r.name == "rdcl"), None)
    if row is None or row.pretrain_group is None:
        return {}
    run = plan.run_dir("rdcl", 0)
    pre = plan.out / "pretrain" / row.pretrain_group / FINAL
    if not ((run / FINAL).is_file() and pre.is_file()):
        return {}
    train_cases = select_cases(spec, plan.split.folds[0].train)
    kept = sorted((run / SNAPSHOT_DIR).glob("*.ckpt"))
    series = figures.relation_series(kept, pre, train_cases, plan.general[0], RELATION_BATCH)
    if len(series) >= 2:  # the kept weights hold step 0 and the last step: start and end
        snaps = {"start": series[min(series)], "end": series[max(series)]}
    else:  # a run without snapshots: rebuild the start, read the end from final.ckpt
        snaps = figures.relation_snapshots(
            run / FINAL, pre, train_cases, plan.general[0], RELATION_BATCH
        )
    out = figures.plot_relation_snapshots(snaps, fig_dir)
    out.update(figures.plot_relation_series(series, fig_dir))
    return out


def write_study_report(plan: StudyPlan, spec: DatasetSpec) -> Path:
    """Collect every scored unit (row, fold, seed) of the study and write tables, figures and
    ``report.md``; returns the report path. Units not run yet are listed as missing."""
    rows, missing = collect_scores(plan)
    out = plan.out
    fig_dir = out / "figures"
    seeds = sorted({*plan.unit_seeds, *(r["seed"] for r in rows)})
    lines = ["# Cross-validation study", ""]
    lines += [f"- COVID data: `{plan.data}`; non-COVID sets: "
              + (", ".join(f"`{g}`" for g in plan.general) or "none"),
              f"- split: {plan.split.source or 'split.json'} ({len(plan.split.folds)} folds)",
              f"- configuration options: `{' '.join(plan.config_args) or '(defaults)'}`",
              f"- training seeds: {', '.join(map(str, seeds))} (the configuration's "
              f"train.seed {plan.default_seed} in run folders `fold_K`, any other seed S in "
              "`fold_K_seed_S`)",
              ""]  # fmt: skip
    if missing:
        lines += [f"Not run yet ({len(missing)}): "
                  + ", ".join(unit_name(plan, m, k, s) for m, k, s in missing), ""]  # fmt: skip
    if not rows:
        lines.append("No run has been scored yet.")
        return write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    write_tables(rows, out, tolerance_mm=plan.tolerance_mm)
    lines += [(out / "results.md").read_text(), ""]
    figs = {"Per-case DSC and NSD per method": figures.plot_boxplots(
        rows, fig_dir / "boxplot.png", tolerance_mm=plan.tolerance_mm)}  # fmt: skip
    figs.update(figures.plot_best_worst(rows, spec, plan.run_dir, fig_dir))
    groups = dict.fromkeys(r.pretrain_group for r in plan.rows if r.pretrain_group)
    logs = {f"G pre-training ({g})": out / "pretrain" / g / "log.jsonl" for g in groups}
    logs.update({r.name: plan.run_dir(r.name, 0) / "log.jsonl" for r in plan.rows})
    curves = figures.plot_curves(logs, fig_dir / "training_curves.png")
    if curves is not None:
        figs["Training curves (fold 1)"] = curves
    figs.update(_relation_figures(plan, spec, fig_dir))
    lines += ["## Figures", ""]
    for caption, path in figs.items():
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    lines += ["Tables: `results.md`, `results.csv` (per fold and pooled), `units.csv` (per "
              "training run), `cases.csv` (per case), `comparison.csv` (paired statistics, run "
              "level then per case), `results.json` (all of it)."]  # fmt: skip
    return write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
