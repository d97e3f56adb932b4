"""Relation matrices and their absolute differences (paper Fig. 4 and 5)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rdcl.errors import RdclInputError

from ._files import save_figure_atomic

RG_NONCOVID = "R_G(X_n)"
RG_COVID = "R_G(X_c)"
RT_COVID = "R_T(X_c)"
"""Conventional keys, in the order that gives the paper's two differences."""


def _as_matrices(matrices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(matrices) < 1:
        raise RdclInputError("expected at least one relation matrix, found none")
    out = {k: np.asarray(v, dtype=np.float64) for k, v in matrices.items()}
    shapes = {v.shape for v in out.values()}
    first = next(iter(out.values())).shape
    if len(shapes) != 1 or len(first) != 2 or first[0] != first[1]:
        raise RdclInputError(
            f"expected square (C, C) relation matrices of one shape, found "
            f"{ {k: v.shape for k, v in out.items()} }"
        )
    return out


def relation_differences(matrices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Absolute element-wise differences of consecutive matrices, in the dict's order.

    For ``{R_G(X_n), R_G(X_c), R_T(X_c)}`` this gives |R_G(X_n) - R_G(X_c)| (what L_G makes
    small) and |R_G(X_c) - R_T(X_c)| (what L_T makes large). Keys are ``"|A - B|"``; values (C, C).
    """
    mats = _as_matrices(matrices)
    names = list(mats)
    return {f"|{a} - {b}|": np.abs(mats[a] - mats[b]) for a, b in itertools.pairwise(names)}


def plot_relation_matrices(matrices: dict[str, np.ndarray], path: str | Path) -> Path:
    """Heat maps of the relation matrices (top row) and their absolute differences (bottom row).

    Args:
        matrices: name -> (C, C) row-normalised relation matrix (numpy or CPU tensor), in display
            order, e.g. ``{RG_NONCOVID: ..., RG_COVID: ..., RT_COVID: ...}``.
        path: output ``.png`` (written atomically).

    All matrices share one colour scale (their joint min..max) and all differences share another
    (0..joint max), so panels in a row are directly comparable; each difference panel's title
    gives its mean. Returns ``path``.
    """
    mats = _as_matrices(matrices)
    diffs = relation_differences(mats)
    ncols = len(mats)
    nrows = 2 if diffs else 1
    fig = Figure(figsize=(3.4 * ncols + 0.8, 3.3 * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    lo = min(float(m.min()) for m in mats.values())
    hi = max(float(m.max()) for m in mats.values())
    im = None
    for ax, (name, m) in zip(axes[0], mats.items(), strict=True):
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("channel")
    axes[0][0].set_ylabel("channel")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.85)
    if diffs:
        dmax = max(max(float(d.max()) for d in diffs.values()), 1e-12)
        for ax, (name, d) in zip(axes[1], diffs.items(), strict=False):
            im = ax.imshow(d, cmap="magma", vmin=0.0, vmax=dmax, interpolation="nearest")
            ax.set_title(f"{name}\nmean {d.mean():.4f}", fontsize=9)
            ax.set_xlabel("channel")
        for ax in axes[1][len(diffs) :]:
            ax.set_axis_off()
        fig.colorbar(im, ax=list(axes[1]), shrink=0.85)
    return save_figure_atomic(fig, path)


def plot_relation_evolution(
    series: dict[int, dict[str, np.ndarray]], path: str | Path, *, rows: int = 4
) -> Path:
    """Relation matrices and their absolute differences over training (paper Fig. 4/5 in time).

    Args:
        series: training step -> matrices as for :func:`plot_relation_matrices` (same keys and
            (C, C) shape at every step), e.g. from ``rdcl.study.figures.relation_series``.
        path: output ``.png`` (written atomically).
        rows: at most this many steps are drawn as heat-map rows (evenly chosen, first and last
            included); the bottom panel plots the mean of every difference at every step.

    One colour scale for all matrices and one (0..max) for all differences, over all drawn
    steps, so a change of colour between rows is a change of the matrix. Returns ``path``.
    """
    if not series:
        raise RdclInputError("expected relation matrices of at least one step, found none")
    steps = sorted(series)
    mats = {s: _as_matrices(series[s]) for s in steps}
    diffs = {s: relation_differences(mats[s]) for s in steps}
    pick = sorted({steps[round(i * (len(steps) - 1) / max(rows - 1, 1))] for i in range(rows)})
    names, dnames = list(mats[steps[0]]), list(diffs[steps[0]])
    ncols = len(names) + len(dnames)
    fig = Figure(figsize=(2.6 * ncols + 1.2, 2.5 * len(pick) + 2.8), layout="constrained")
    grid = fig.add_gridspec(len(pick) + 1, ncols, height_ratios=[1.0] * len(pick) + [1.1])
    lo = min(float(m.min()) for s in pick for m in mats[s].values())
    hi = max(float(m.max()) for s in pick for m in mats[s].values())
    dmax = max([float(d.max()) for s in pick for d in diffs[s].values()] + [1e-12])
    for r, step in enumerate(pick):
        panels = [(n, mats[step][n], "viridis", lo, hi) for n in names]
        panels += [(n, diffs[step][n], "magma", 0.0, dmax) for n in dnames]
        for c, (name, m, cmap, vmin, vmax) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = name if c < len(names) else f"{name}\nmean {m.mean():.4f}"
            ax.set_title(title if r == 0 or c >= len(names) else "", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"step {step}")
    ax = fig.add_subplot(grid[len(pick), :])
    for name in dnames:
        ax.plot(steps, [float(diffs[s][name].mean()) for s in steps], marker="o", label=name)
    ax.set_xlabel("training step (stage 2)")
    ax.set_ylabel("mean absolute difference")
    ax.legend(fontsize=8)
    return save_figure_atomic(fig, path)
