"""Training curves from the per-step ``log.jsonl`` files written by ``rdcl.training``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rdcl.errors import RdclInputError
from rdcl.formats.run_log import read_log

from ._files import save_figure_atomic

PANELS = (
    ("segmentation loss L_seg (Dice + BCE)", (("seg", ""),), False),
    ("L_G = lambda_G ramp d_G", (("loss_g", ""),), False),
    ("L_T = -lambda_T ramp d_T", (("loss_t", ""),), False),
    ("relation terms next to L_seg: |L_G| / L_seg, |L_T| / L_seg (log)",
     (("ratio_g", "|L_G|/L_seg"), ("ratio_t", "|L_T|/L_seg")), True),
    ("d_G, d_T (squared Frobenius norms, at most 4 C)", (("d_g", "d_G"), ("d_t", "d_T")), False),
    ("G bottleneck effective rank on X_c (1 = collapsed, at most C)", (("g_rank", ""),), False),
    ("G bottleneck feature RMS on X_c (fading under weight decay?)", (("g_rms", ""),), False),
    ("learning rate", (("lr", ""),), False),
)  # fmt: skip
"""(panel title, ((record key, series suffix), ...), log y-axis) for the eight panels. ``ratio_g``
and ``ratio_t`` are derived per record: |loss_g| / seg and |loss_t| / seg; ``g_rank`` and
``g_rms`` are G's feature statistics (``rdcl.training.feature_stats``), logged every
``train.feature_stats_every`` steps by the networks that have a G."""

UNSMOOTHED = frozenset({"lr", "g_rank", "g_rms"})
"""Keys drawn as plain lines (no faint raw series, no moving average): the learning rate, and
G's statistics, which are sparse already."""

_STYLES = ("-", "--")


def _with_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with ``ratio_g`` / ``ratio_t`` = |loss_g| / seg and |loss_t| / seg where both are
    numbers and seg > 0."""
    out = []
    for r in records:
        r = dict(r)
        seg = r.get("seg")
        for term, key in (("loss_g", "ratio_g"), ("loss_t", "ratio_t")):
            value = r.get(term)
            if isinstance(seg, int | float) and seg > 0 and isinstance(value, int | float):
                r[key] = abs(float(value)) / float(seg)
        out.append(r)
    return out


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records whose ``key`` holds a finite number."""
    pts = [
        (float(r["step"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), int | float) and "step" in r and math.isfinite(float(r[key]))
    ]
    if not pts:
        return np.empty(0), np.empty(0)
    arr = np.asarray(pts)
    return arr[:, 0], arr[:, 1]


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (shorter at the start); same length as input."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise RdclInputError(f"window must be >= 1, found {window}")
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def plot_loss_curves(log_jsonl_paths: dict[str, Path], path: str | Path) -> Path:
    """Draw :func:`loss_curves_figure` of ``log_jsonl_paths`` into the ``.png`` ``path``
    (written atomically); returns ``path``."""
    return save_figure_atomic(loss_curves_figure(log_jsonl_paths), path)


def loss_curves_figure(log_jsonl_paths: dict[str, Path]) -> Figure:
    """Eight panels over the step: L_seg, L_G, L_T, the relation terms relative to L_seg (log
    scale, so their scale next to the segmentation loss shows), d_G and d_T, G's bottleneck
    effective rank and feature RMS (collapse and fading, ``docs/relation_weights.md``), the
    learning rate.

    Args:
        log_jsonl_paths: run label -> ``log.jsonl`` whose records carry ``step``, ``stage``,
            ``loss``, ``seg``, ``d_g``, ``d_t``, ``loss_g``, ``loss_t``, ``lr`` (and
            ``g_rank``, ``g_rms`` where logged). Each
            (label, stage) pair is one line; missing, null or non-finite values are skipped (e.g.
            a baseline has no L_G).

    Loss panels show the raw values faintly and a trailing moving average (window n/20) on top;
    a panel no run logged says "not logged". Returns the figure (2 x 4 axes, :data:`PANELS`
    order, Agg canvas).
    """
    if not log_jsonl_paths:
        raise RdclInputError("expected at least one training log, found none")
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, log in log_jsonl_paths.items():
        records = read_log(log)
        stages = list(dict.fromkeys(str(r.get("stage", "")) for r in records))
        for stage in stages:
            name = label if len(stages) == 1 or not stage else f"{label} ({stage})"
            runs[name] = [r for r in records if str(r.get("stage", "")) == stage]

    fig = Figure(figsize=(20.0, 7.0), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, (title, keys, log_y) in zip(axes, PANELS, strict=True):
        drawn = False
        for color, (name, records) in zip(colors, runs.items(), strict=True):
            records = _with_ratios(records)
            for style, (key, suffix) in zip(_STYLES, keys, strict=False):
                steps, values = _series(records, key)
                if log_y:
                    keep = values > 0
                    steps, values = steps[keep], values[keep]
                if steps.size == 0:
                    continue
                drawn = True
                label = f"{name} {suffix}".strip()
                if key in UNSMOOTHED:
                    ax.plot(steps, values, color=color, label=label, linestyle=style)
                    continue
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8, linestyle=style)
                window = max(1, steps.size // 20)
                ax.plot(steps, moving_average(values, window), color=color, label=label,
                        linestyle=style)  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if drawn:
            if log_y:
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return fig
