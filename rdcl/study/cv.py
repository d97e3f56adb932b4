"""The cross-validation study as a library: :func:`plan_cv` builds and checks a
:class:`~rdcl.study.runner.StudyPlan` from the options ``rdcl cv`` takes, :func:`run_cv` runs it
(stage 1, every (row, fold, seed) unit in its own process, scoring, tables, figures, report).

From Python::

    from rdcl.study import plan_cv, run_cv

    plan = plan_cv("data/covid", "cv_out", general=["data/msd"], folds=5, train_per_fold=4,
                   methods=["baseline", "rdcl"], preset="paper3d", device="cuda")
    report = run_cv(plan).report

``rdcl cv`` is these two calls; the checks, their order and their messages are the command's.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rdcl.config import resolve_config
from rdcl.data.datasets.layout import load_dataset
from rdcl.errors import RdclInputError
from rdcl.formats.run_folder import FINAL
from rdcl.paths import require_dir
from rdcl.training.distributed import per_rank_batch
from rdcl.training.plan import check_inputs

from .outputs import write_study_report
from .rows import study_rows
from .runner import (
    StudyPlan,
    check_launcher,
    check_study_data,
    launcher_ranks,
    prepare_study,
    resolve_split,
    run_stage1,
    run_study,
    unit_name,
    verify_finished,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CvOutcome:
    """What :func:`run_cv` produced: ``report`` the study's ``report.md`` (None when the plan
    only ran stage 1), ``stage1`` the stage-1 checkpoints of a ``stage1_only`` plan."""

    report: Path | None
    stage1: list[Path] = field(default_factory=list)


def _split_launcher(launcher: str | Sequence[str]) -> tuple[list[str], str]:
    """The launcher's words and how messages name it."""
    if not isinstance(launcher, str):
        return list(launcher), shlex.join(launcher)
    try:
        return shlex.split(launcher), launcher
    except ValueError as exc:  # an unbalanced quote
        raise RdclInputError(
            f"--launcher {launcher!r} cannot be split into words ({exc}); expected a "
            "command such as 'torchrun --nproc_per_node=4'"
        ) from None


def _check_options(
    out: Path,
    split: str | Path | None,
    folds: int | None,
    train_per_fold: int | None,
    tolerance: float,
) -> None:
    """The option combinations and values :func:`plan_cv` refuses before reading any data."""
    if (folds is None) != (train_per_fold is None):
        raise RdclInputError("--folds and --train-per-fold go together; expected both or neither")
    if split is not None and folds is not None:
        raise RdclInputError("expected --split FILE or --folds K --train-per-fold N, found both")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise RdclInputError(f"--tolerance must be a finite distance >= 0 mm, found {tolerance}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {out}")


def _unique_seeds(seeds: Sequence[int]) -> list[int]:
    """``--seeds`` in the order given, repeats dropped (each >= 0, else RdclInputError)."""
    bad = [s for s in seeds if s < 0]
    if bad:
        raise RdclInputError(f"--seeds takes seeds >= 0, found {bad[0]}")
    return list(dict.fromkeys(seeds))


def _selected_folds(fold: Sequence[int], n_folds: int) -> list[int]:
    """``--fold`` (1-based) -> sorted 0-based fold indices (RdclInputError outside 1..n)."""
    bad = [k for k in fold if not 1 <= k <= n_folds]
    if bad:
        raise RdclInputError(f"--fold {bad[0]} is outside the split's folds 1..{n_folds}")
    return sorted({k - 1 for k in fold})


def plan_cv(
    data: str | Path,
    out: str | Path,
    *,
    general: Sequence[str | Path] = (),
    split: str | Path | None = None,
    folds: int | None = None,
    train_per_fold: int | None = None,
    split_seed: int = 0,
    methods: Sequence[str] | None = None,
    fold: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    stage1_only: bool = False,
    launcher: str | Sequence[str] | None = None,
    report_only: bool = False,
    device: str = "cpu",
    tolerance: float = 3.0,
    overwrite: bool = False,
    config: str | Path | None = None,
    preset: str | None = None,
    overrides: Sequence[str] = (),
) -> StudyPlan:
    """The study ``rdcl cv`` runs for the same options (each argument is the option of the same
    name, ``rdcl cv --help``), checked before anything is written.

    Args:
        data: the COVID dataset (``--data``); ``general`` the non-COVID sets.
        out: the study folder ``CV_DIR``.
        split: a split file; or ``folds`` x ``train_per_fold`` seeded by ``split_seed``; or
            neither, to reuse ``out/split.json``.
        methods: the rows to run (None: all); ``fold`` the 1-based folds to run (None: all);
            ``seeds`` the training seeds (None: the configuration's ``train.seed``).
        stage1_only, report_only, overwrite: as ``--stage1-only``, ``--report-only``,
            ``--overwrite`` (kept in the plan for :func:`run_cv`).
        launcher: the command that runs ``-m rdcl.study.unit UNIT.json`` (a string is split
            into words as a shell would, e.g. ``"torchrun --nproc_per_node=4"``; None: this
            Python).
        device: each run's training and prediction device; ``tolerance`` the NSD tolerance in
            mm.
        config, preset, overrides: the configuration of every run (``--config``,
            ``--preset``, ``--set``).

    Raises the checks' one-line errors: :class:`~rdcl.errors.RdclInputError` and its
    subclasses (options, configuration, device, split, rows, launcher), FileNotFoundError and
    FileExistsError (folders).
    """
    data, out = Path(data), Path(out)
    general = [Path(g) for g in general]
    _check_options(out, split, folds, train_per_fold, tolerance)
    spec = load_dataset(require_dir(data, "--data folder"))
    for g in general:
        if not g.exists():
            raise FileNotFoundError(f"--general dataset not found: {g}")
    # The configuration must fit the data before any run starts (one line, not a child's error).
    cfg = resolve_config(config, preset, overrides, dim=spec.dim)
    # as every run checks them: the device (cv's device is each run's; a report trains nothing)
    # and the data's dimensions
    check_inputs(
        cfg.override([f"train.device={'cpu' if report_only else device}"]),
        spec,
        [load_dataset(require_dir(g, "--general folder")) for g in general],
    )
    seeds = None if seeds is None else _unique_seeds(seeds)
    rows = study_rows(general, methods)
    the_split = resolve_split(
        [c.name for c in spec.cases],
        out,
        split_file=None if split is None else Path(split),
        folds=folds,
        train_per_fold=train_per_fold,
        seed=split_seed,
    )
    selected = _selected_folds(fold, len(the_split.folds)) if fold else None
    plan = StudyPlan(
        data=data,
        general=general,
        out=out,
        rows=rows,
        split=the_split,
        config=None if config is None else Path(config).resolve(),
        preset=preset,
        overrides=list(overrides),
        folds=selected,
        device=device,
        tolerance_mm=tolerance,
        quiet=True,
        seeds=seeds,
        default_seed=cfg.train.seed,
        covid=spec,
        stage1_only=stage1_only,
        report_only=report_only,
        overwrite=overwrite,
    )
    if launcher is not None:
        plan.launcher, named = _split_launcher(launcher)
        check_launcher(plan.launcher)
        ranks = launcher_ranks(plan.launcher)
        if ranks is not None:  # as 'rdcl train --nproc-per-node' checks it, before any run
            per_rank_batch(cfg.data.batch_size, ranks, option=f"--launcher {named!r}")
    return plan


def run_cv(plan: StudyPlan) -> CvOutcome:
    """Run the study ``plan`` (from :func:`plan_cv`) as ``rdcl cv`` does.

    Before anything is written: every case of the data is read once (not for ``report_only``)
    and every finished unit's checkpoint must load. Then ``CV_DIR`` is prepared (a study of
    other settings is refused unless ``plan.overwrite``), and, unless ``plan.report_only``, the
    stage-1 runs (alone with ``plan.stage1_only``) and every selected (row, fold, seed) unit are
    trained, each in its own process (:mod:`rdcl.study.unit`), and scored; finished units are
    skipped and stopped ones resume, so calling it again continues the study. Last the tables,
    figures and ``report.md`` of every unit finished so far are written.

    Raises:
        rdcl.study.runner.StudyUnitInputError: a unit refused its input (its one line).
        rdcl.study.runner.StudyRunError: a unit crashed (its last line); call again to resume.
        rdcl.study.runner.StudyDamageError, StudyMismatchError and the data's reading errors.
    """
    spec = plan.covid if plan.covid is not None else load_dataset(plan.data)
    if not plan.report_only:  # every case read once, before the study folder is written
        check_study_data(plan, spec)
    for row in plan.rows:  # the tables come from the finished runs: their checkpoints must be sound
        for k in range(len(plan.split.folds)):
            for seed in plan.seeds_of(row.name):
                run = plan.run_dir(row.name, k, seed)
                if (run / "scores.csv").is_file():
                    verify_finished(run / FINAL, unit_name(plan, row.name, k, seed))
    prepare_study(plan, overwrite=plan.overwrite)
    if not plan.report_only:
        if plan.stage1_only:
            return CvOutcome(None, run_stage1(plan))
        run_study(plan, spec)
    return CvOutcome(write_study_report(plan, spec))
