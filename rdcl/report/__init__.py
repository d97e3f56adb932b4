"""The demo report: Markdown summary and PNG figures (pure functions of arrays and records).

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot, no
global backend state) and written atomically; the same inputs give the same PNG bytes.
"""

from __future__ import annotations

from rdcl.formats.run_log import read_log

from .curves import plot_loss_curves
from .overlay import lesion_slice, plot_overlays
from .relation_figures import (
    RG_COVID,
    RG_NONCOVID,
    RT_COVID,
    plot_relation_evolution,
    plot_relation_matrices,
    relation_differences,
)
from .summary import mean_std, write_summary

__all__ = [
    "RG_COVID",
    "RG_NONCOVID",
    "RT_COVID",
    "lesion_slice",
    "mean_std",
    "plot_loss_curves",
    "plot_overlays",
    "plot_relation_evolution",
    "plot_relation_matrices",
    "read_log",
    "relation_differences",
    "write_summary",
]
