"""``rdcl cv``: every method of the paper's Tables II/III over the folds of a split, each training
run (a unit) its own process started from a unit file (:mod:`rdcl.study.unit`), resumable per
method and fold.

Study folder layout::

    CV_DIR/study.json                     the data, sets, rows and config options of the study
    CV_DIR/split.json                     the split used (a copy of --split, or the seeded one)
    CV_DIR/folds/fold_K/{train,test}.txt  case names of fold K (K from 1)
    CV_DIR/pretrain/<group>/              stage 1 (G + decoder on non-COVID sets), shared by folds
    CV_DIR/runs/<row>/fold_K/             rdcl train run folder; predictions/, scores.csv
    CV_DIR/runs/<row>/fold_K_seed_S/      the same with train.seed=S (``--seeds``), for every seed
                                          S other than the configuration's own train.seed
    CV_DIR/cache/                         preprocessing cache shared by all runs
    CV_DIR/units/<run folder>/            each run's unit.json (what its process trains) and
                                          result.json (how it ended), e.g. units/runs/rdcl/fold_1
    CV_DIR/results.{md,csv,json}, comparison.csv, units.csv, cases.csv, figures/

A unit (row, fold, seed) is trained once per seed of ``--seeds`` (default: the configuration's
train.seed alone, whose runs keep the folder ``fold_K``, so a one-seed study keeps the layout it
always had and more seeds can be added to it); stage 1 is shared by every fold and seed. A unit
is finished when its ``scores.csv`` exists (written last, atomically): it is skipped. A run with
``last.ckpt`` but no ``final.ckpt`` resumes (as ``rdcl train --resume``); a trained run without
scores is only scored. ``--fold K`` and ``--methods`` select part of the work,
so folds can go to different machines or job-array tasks sharing ``CV_DIR`` (docs/study.md).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.spec import DatasetSpec
from rdcl.data.datasets.subset import write_case_list
from rdcl.errors import CheckpointError, RdclInputError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import FINAL, LAST, LOG_NAME
from rdcl.fsutil import write_text_atomic
from rdcl.training.data_streams import source_identity

from . import unit as units
from .rows import StudyRow, group_sets
from .scoring import read_scores, score_run
from .splits import Split, check_split, make_split, read_split, write_split

logger = logging.getLogger(__name__)


RELATION_SNAPSHOTS = 6
"""Evenly spaced stage-2 steps (plus step 0) at which the ``rdcl`` run of the first fold keeps
its weights (``train.snapshots``) for the relation matrices over training."""


class StudyRunError(RuntimeError):
    """A training run of the study crashed (its result's error line, or the last line of its
    output when it wrote no result, is in the message)."""


class StudyMismatchError(RdclInputError):
    """``CV_DIR`` holds a study with other data, sets or configuration (pass overwrite)."""


class StudyDamageError(RdclInputError):
    """A finished run of the study lost its checkpoint (truncated, removed, replaced)."""


class StudyUnitInputError(RdclInputError):
    """A training run of the study refused its input (its result file says "refused", from rank
    0 or, under a torchrun launcher, from another rank): rdcl's one line."""


def check_launcher(launcher: Sequence[str]) -> None:
    """Refuse, before anything is written, a ``--launcher`` whose program cannot be found."""
    if not launcher:
        raise RdclInputError("--launcher is empty; expected a command such as 'torchrun'")
    if shutil.which(launcher[0]) is None:
        raise RdclInputError(
            f"--launcher {launcher[0]!r}: no such program on PATH; expected a command that "
            f"runs '-m {units.MODULE} UNIT.json' (e.g. 'torchrun --nproc_per_node=4')"
        )


_NPROC = ("--nproc_per_node", "--nproc-per-node")
_NNODES = ("--nnodes",)


def launcher_ranks(launcher: Sequence[str]) -> int | None:
    """The number of ranks a torchrun-style ``launcher`` command (``torchrun
    --nproc_per_node=4``, ``python -m torch.distributed.run --nproc-per-node 4 --nnodes 2``)
    starts: ``--nproc_per_node`` times ``--nnodes``, each 1 when not given. None when the command
    sets neither, or sets one to something other than an integer (``auto``, ``gpu``, an elastic
    ``1:4``), which only the launcher itself can resolve."""
    found: dict[tuple[str, ...], str] = {}
    for i, arg in enumerate(launcher):
        for names in (_NPROC, _NNODES):
            for name in names:
                if arg == name and i + 1 < len(launcher):
                    found[names] = launcher[i + 1]
                elif arg.startswith(name + "="):
                    found[names] = arg[len(name) + 1 :]
    if not found:
        return None
    ranks = 1
    for value in found.values():
        if not value.strip().isdigit():
            return None
        ranks *= int(value)
    return ranks


CHECKED_NAME = "checked.json"
"""``CV_DIR`` file recording the source identity of the data :func:`check_study_data` read in
full, so a rerun on unchanged files does not read them again."""


def check_study_data(plan: StudyPlan, spec: DatasetSpec) -> None:
    """Read every case of the COVID set and of every ``--general`` set once, before any run
    starts, so a corrupt case is one line at once, not a failure inside a fold after minutes.

    Data whose files (paths, sizes, times) are as recorded in ``CV_DIR/checked.json`` after an
    earlier full check are not read again. Raises the reading errors (DatasetError, ...).
    """
    sets = [spec, *(load_dataset(g) for g in plan.general)]
    identities = [source_identity(s) for s in sets]
    record = plan.out / CHECKED_NAME
    try:
        if json.loads(record.read_text()) == identities:
            return
    except (OSError, ValueError):
        pass
    for s in sets:
        for case in s.cases:
            load_case(case)
    if plan.out.is_dir():
        write_text_atomic(record, json.dumps(identities) + "\n")


def verify_finished(path: Path, what: str) -> Path:
    """``path`` (a finished run's ``final.ckpt``) if it is a sound checkpoint, else
    :class:`StudyDamageError` naming it: a damaged checkpoint is never passed over in silence."""
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        raise StudyDamageError(
            f"{what} is finished but its checkpoint is damaged ({exc}); remove {path.parent} "
            "to train it again"
        ) from None
    return path


UNITS_DIR = "units"
"""``CV_DIR`` folder of the unit and result files, one sub-folder per run folder."""


@dataclass
class StudyPlan:
    """What ``rdcl cv`` runs (built and checked by :func:`rdcl.study.plan_cv`, run by
    :func:`rdcl.study.run_cv`).

    ``config``/``preset``/``overrides`` are the configuration every run resolves (as ``rdcl
    train --config``/``--preset``/``--set``); ``folds`` the 0-based folds to run (None: all);
    ``device`` the training/prediction device; ``launcher`` the command that runs ``-m
    rdcl.study.unit UNIT.json`` (the current Python, or e.g. ``["torchrun",
    "--nproc_per_node=4"]``); ``seeds`` the training seeds every (row, fold) is run with (None:
    ``default_seed`` alone); ``default_seed`` the configuration's own ``train.seed``, whose runs
    keep the one-seed folder names; ``covid`` the loaded ``data`` set (None: loaded when the
    study runs). ``stage1_only`` runs only the stage-1 runs the rows need, ``report_only``
    trains nothing and writes the report of the runs finished so far; ``overwrite`` accepts
    changed settings in an existing ``out`` (finished runs are kept).
    """

    data: Path
    general: list[Path]
    out: Path
    rows: list[StudyRow]
    split: Split
    config: Path | None = None
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    folds: list[int] | None = None
    device: str = "cpu"
    tolerance_mm: float = 3.0
    quiet: bool = True
    launcher: list[str] = field(default_factory=lambda: [sys.executable])
    seeds: list[int] | None = None
    default_seed: int = 0
    covid: DatasetSpec | None = field(default=None, repr=False)
    stage1_only: bool = False
    report_only: bool = False
    overwrite: bool = False

    @property
    def config_args(self) -> list[str]:
        """The configuration as ``rdcl train`` options (``--config FILE`` with the file's
        absolute path, ``--preset NAME``, ``--set ITEM`` ...), as ``study.json`` records it and
        the report names it."""
        out = []
        if self.config is not None:
            out += ["--config", str(Path(self.config).resolve())]
        if self.preset is not None:
            out += ["--preset", self.preset]
        for item in self.overrides:
            out += ["--set", item]
        return out

    @property
    def unit_seeds(self) -> list[int]:
        """The seeds to run: ``seeds``, else ``[default_seed]``."""
        return list(self.seeds) if self.seeds else [self.default_seed]

    def run_dir(self, row: str, fold: int, seed: int | None = None) -> Path:
        """The run folder of ``row`` on 0-based ``fold`` with training seed ``seed`` (None:
        ``default_seed``): ``fold_K`` for the default seed, as a one-seed study names it,
        ``fold_K_seed_S`` for any other."""
        name = f"fold_{fold + 1}"
        if seed is not None and seed != self.default_seed:
            name += f"_seed_{seed}"
        return self.out / "runs" / row / name

    def unit_dir(self, run: Path) -> Path:
        """Where the unit and result files of run folder ``run`` (inside ``out``) live:
        ``out/units/<run's path inside out>``."""
        return self.out / UNITS_DIR / Path(run).relative_to(self.out)

    def seeds_of(self, row: str) -> list[int]:
        """The seeds of ``row``: :attr:`unit_seeds`, then those of its run folders already there
        in any fold (an earlier call's ``--seeds``), so reports see every run and list the
        folds a seed has not reached yet."""
        found = set()
        runs = self.out / "runs" / row
        if runs.is_dir():
            for path in runs.iterdir():
                m = _RUN_NAME.fullmatch(path.name)
                if m and path.is_dir():
                    found.add(self.default_seed if m.group(2) is None else int(m.group(2)))
        return list(dict.fromkeys([*self.unit_seeds, *sorted(found)]))

    def fold_dir(self, fold: int) -> Path:
        """Where fold ``fold``'s case lists live."""
        return self.out / "folds" / f"fold_{fold + 1}"


_RUN_NAME = re.compile(r"fold_(\d+)(?:_seed_(\d+))?")
"""A run folder's name: ``fold_K`` or ``fold_K_seed_S`` (:meth:`StudyPlan.run_dir`)."""


def resolve_split(
    data_names: Sequence[str],
    out: Path,
    *,
    split_file: Path | None,
    folds: int | None,
    train_per_fold: int | None,
    seed: int,
) -> Split:
    """The study's split: ``split_file``; else a seeded split of ``folds`` x ``train_per_fold``;
    else ``out/split.json`` of an earlier call. A split that differs from the one ``out`` was run
    with raises :class:`StudyMismatchError`; the split is checked against the case names."""
    saved = out / "split.json"
    if split_file is not None:
        split = read_split(split_file)
        if saved.is_file() and read_split(saved) != split:
            raise StudyMismatchError(
                f"{out} was run with another split ({saved}); expected the same --split or a "
                "new --out (or --overwrite)"
            )
    elif folds is not None and train_per_fold is not None:
        split = make_split(data_names, folds, train_per_fold, seed=seed)
        if saved.is_file() and read_split(saved) != split:
            raise StudyMismatchError(
                f"{out} was run with another split ({saved}); expected the same --folds, "
                "--train-per-fold and --split-seed, or a new --out"
            )
    elif saved.is_file():
        split = read_split(saved)
    else:
        raise RdclInputError(
            "expected --split FILE or --folds K --train-per-fold N (no split.json in --out yet)"
        )
    check_split(split, data_names, str(split_file or saved))
    return split


def _study_record(plan: StudyPlan) -> dict:
    return {
        "data": str(plan.data.resolve()),
        "general": [str(g.resolve()) for g in plan.general],
        "config_args": list(plan.config_args),
        "tolerance_mm": plan.tolerance_mm,
    }


def prepare_study(plan: StudyPlan, *, overwrite: bool = False) -> None:
    """Create ``CV_DIR`` with ``study.json``, ``split.json`` and the fold case lists.

    An existing study must have the same data, sets, config options and tolerance (those change
    what every run computes); raises :class:`StudyMismatchError` otherwise, unless ``overwrite``
    (then the record is replaced and runs with changed settings must be removed by the user:
    training refuses to resume a run whose config changed).
    """
    record = _study_record(plan)
    path = plan.out / "study.json"
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old != record:
            raise StudyMismatchError(
                f"{plan.out} holds a study with other settings ({path}); expected the same "
                "--data, --general, configuration and --tolerance, a new --out, or --overwrite"
            )
    plan.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    write_split(plan.split, plan.out / "split.json")
    for k, fold in enumerate(plan.split.folds):
        write_case_list(fold.train, plan.fold_dir(k) / "train.txt")
        write_case_list(fold.test, plan.fold_dir(k) / "test.txt")


def _restart(run: Path) -> dict[str, bool]:
    """How a run folder continues: resume a partial run (``last.ckpt``), start again over one
    that stopped before its first checkpoint (a log only), else start fresh."""
    partial = (run / LAST).is_file()
    return {"resume": partial, "overwrite": not partial and (run / LOG_NAME).is_file()}


def make_unit(plan: StudyPlan, run: Path, name: str, stage: str, **what) -> units.Unit:
    """The unit that trains run folder ``run`` of ``plan`` (``stage`` "train" or "pretrain");
    ``what``: the unit's other fields (``cases``, ``general``, ``method``, ``pretrained``,
    extra ``overrides``). Paths are written as the plan holds them."""
    extra = what.pop("overrides", ())
    return units.Unit(
        name=name,
        stage=stage,
        data=str(plan.data),
        out=str(run),
        result=str(plan.unit_dir(run) / units.RESULT_FILE),
        cache=str(plan.out / "cache"),
        device=plan.device,
        config=None if plan.config is None else str(Path(plan.config).resolve()),
        preset=plan.preset,
        overrides=(*plan.overrides, *extra),
        progress=not plan.quiet,
        **_restart(run),
        **what,
    )


def launch(plan: StudyPlan, unit: units.Unit) -> Path:
    """Run ``unit`` in its own process through ``plan.launcher`` and return its final
    checkpoint.

    Raises :class:`StudyUnitInputError` (the unit's one line, prefixed by its name) when its
    result says "refused", :class:`StudyRunError` when it says "crashed", and when the process
    failed without a result (killed, a launcher that could not start it), with the last line
    of its output.
    """
    unit_file = units.write_unit(unit, Path(unit.result).parent / units.UNIT_FILE)
    cmd = units.command(plan.launcher, unit_file)
    logger.info("%s: %s", unit.name, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    outcome = units.read_outcome(unit.result)
    if outcome is not None and outcome.status == "refused":
        raise StudyUnitInputError(f"{unit.name}: {outcome.error}")
    if outcome is not None and outcome.status == "crashed":
        raise StudyRunError(f"{unit.name} failed (exit {proc.returncode}): {outcome.error}")
    if proc.returncode == 0 and outcome is not None and outcome.final is not None:
        return Path(outcome.final)
    # no result (killed, a launcher that did not start the unit): the output says why
    code = proc.returncode
    reason = failure_line(proc.stderr or proc.stdout) if code else f"no result in {unit.result}"
    raise StudyRunError(f"{unit.name} failed (exit {code}): {reason}")


def failure_line(output: str) -> str:
    """The line of a failed process's output that says why, for a unit that died without a
    result file: rdcl's own one-line error (also when a launcher such as torchrun prints its
    summary after it), else the last line with words."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    own = [ln for ln in lines if ln.startswith("rdcl ") and ": error: " in ln]
    if own:
        return own[-1]
    worded = [ln for ln in lines if any(c.isalnum() for c in ln)]
    return worded[-1] if worded else "(no output)"


def pretrain_checkpoint(plan: StudyPlan, group: str) -> Path:
    """Stage 1 of ``group`` (as ``rdcl train --pretrain-only``), run once and shared by all
    folds."""
    run = plan.out / "pretrain" / group
    final = run / FINAL
    what = f"stage 1 ({group})"
    if final.is_file():
        return verify_finished(final, what)
    general = tuple(str(g) for g in group_sets(group, plan.general))
    return launch(plan, make_unit(plan, run, what, "pretrain", general=general))


def unit_name(plan: StudyPlan, row: str, fold: int, seed: int | None = None) -> str:
    """How messages name a unit: ``rdcl fold 2``, with ``seed S`` for a non-default seed."""
    name = f"{row} fold {fold + 1}"
    if seed is not None and seed != plan.default_seed:
        name += f" seed {seed}"
    return name


def run_unit(
    plan: StudyPlan, row: StudyRow, fold: int, spec: DatasetSpec, seed: int | None = None
) -> list[dict]:
    """Train (or resume) and score ``row`` on 0-based ``fold`` with training seed ``seed``
    (None: the configuration's); skipped when already scored.

    A seed other than ``plan.default_seed`` is set as ``train.seed=S``; stage 1 stays the shared
    one. Returns the run's score rows ``{"case", "dsc", "nsd"}``.
    """
    run = plan.run_dir(row.name, fold, seed)
    what = unit_name(plan, row.name, fold, seed)
    scores = run / "scores.csv"
    if scores.is_file():
        verify_finished(run / FINAL, what)
        logger.info("%s: done, skipped", what)
        return read_scores(scores)
    if not (run / FINAL).is_file():
        kw: dict = {"method": row.method, "cases": str(plan.fold_dir(fold) / "train.txt")}
        if row.pretrain_group is not None:
            kw["pretrained"] = str(pretrain_checkpoint(plan, row.pretrain_group))
        if row.general_batches:
            kw["general"] = tuple(str(g) for g in plan.general)
        default = seed is None or seed == plan.default_seed
        extra = []
        if row.name == "rdcl" and fold == 0 and default:  # the relation figures' run
            extra.append(f"train.snapshots={RELATION_SNAPSHOTS}")
        if not default:
            extra.append(f"train.seed={seed}")
        launch(plan, make_unit(plan, run, what, "train", overrides=extra, **kw))
    n_test = len(plan.split.folds[fold].test)
    logger.info("%s: scoring %d test cases", what, n_test)
    return score_run(
        run / FINAL,
        spec,
        plan.split.folds[fold].test,
        run / "predictions",
        scores,
        tolerance_mm=plan.tolerance_mm,
        device=plan.device,
    )


def collect_scores(plan: StudyPlan) -> tuple[list[dict], list[tuple[str, int, int]]]:
    """Per-case rows ``{"method", "fold", "seed", "case", "dsc", "nsd"}`` of every scored unit
    of the study (all folds, not only ``plan.folds``; every seed of :meth:`StudyPlan.seeds_of`),
    and the (row, fold, seed) units not scored yet."""
    rows, missing = [], []
    for row in plan.rows:
        seeds = plan.seeds_of(row.name)
        for k in range(len(plan.split.folds)):
            for seed in seeds:
                path = plan.run_dir(row.name, k, seed) / "scores.csv"
                if not path.is_file():
                    missing.append((row.name, k, seed))
                    continue
                rows += [
                    {"method": row.name, "fold": k, "seed": seed, **r} for r in read_scores(path)
                ]
    return rows, missing


def run_stage1(plan: StudyPlan) -> list[Path]:
    """Every stage-1 run the selected rows need (``rdcl cv --stage1-only``): run this once before
    spreading folds over machines, so that parallel folds do not start the same stage 1."""
    groups = dict.fromkeys(r.pretrain_group for r in plan.rows if r.pretrain_group is not None)
    return [pretrain_checkpoint(plan, g) for g in groups]


def run_study(plan: StudyPlan, spec: DatasetSpec) -> tuple[list[dict], list[tuple[str, int, int]]]:
    """Run every selected (row, fold, seed) in order (seeds outer, so each seed's study is
    complete before the next starts; then folds, then rows); returns :func:`collect_scores`.
    ``spec`` is the COVID dataset (``rdcl.data.load_dataset(data)``)."""
    folds = plan.folds if plan.folds is not None else range(len(plan.split.folds))
    for seed in plan.unit_seeds:
        for k in folds:
            for row in plan.rows:
                run_unit(plan, row, k, spec, seed)
    return collect_scores(plan)
