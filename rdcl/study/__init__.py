"""The paper's cross-validation study (``rdcl cv``) as a library: :func:`plan_cv` builds and
checks a :class:`StudyPlan` from the command's options, :func:`run_cv` runs it.

- :mod:`~rdcl.study.cv`: :func:`plan_cv` and :func:`run_cv`, what ``rdcl cv`` calls.
- :mod:`~rdcl.study.splits`: split files (the official Task-1 split) and seeded splits.
- :mod:`~rdcl.study.rows`: the table rows (baseline, pretrain_<set>, ..., rdcl).
- :mod:`~rdcl.study.runner`: the plan, the study folder, one process per (row, fold, seed),
  resumable.
- :mod:`~rdcl.study.unit`: a unit's process: its unit file, its result file and
  ``python -m rdcl.study.unit UNIT.json``.
- :mod:`~rdcl.study.scoring`: predict and score a fold's test cases.
- :mod:`~rdcl.study.stats`: paired comparisons by training run (t-interval, Wilcoxon and t-test
  p; the primary analysis) and by case (bootstrap CI, wins, Wilcoxon signed-rank).
- :mod:`~rdcl.study.paper_tables`: the paper's table format as Markdown, CSV and JSON.
- :mod:`~rdcl.study.figures`, :mod:`~rdcl.study.outputs`: figures and ``report.md``.

The names below are imported when first used, so that ``python -m rdcl.study.unit`` (a unit's
process) does not import the study's runner, report and figures, and with them its own module a
second time, before it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cv import CvOutcome, plan_cv, run_cv
    from .runner import StudyPlan, StudyRunError, StudyUnitInputError

__all__ = ["CvOutcome", "StudyPlan", "StudyRunError", "StudyUnitInputError", "plan_cv", "run_cv"]

_HOMES = {
    "CvOutcome": "cv",
    "plan_cv": "cv",
    "run_cv": "cv",
    "StudyPlan": "runner",
    "StudyRunError": "runner",
    "StudyUnitInputError": "runner",
}


def __getattr__(name: str) -> object:
    """The public names of :data:`__all__`, imported from their modules on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
