"""One training run of the study in its own process: the unit file that says what to train, the
result file that says how it ended, and the child's entry point ``python -m rdcl.study.unit
UNIT.json`` that calls :func:`rdcl.training.run.run_training` (or
:func:`~rdcl.training.run.run_pretraining` for stage 1).

The unit file (JSON, written atomically by the parent, :func:`write_unit`)::

    {"format": 1, "name": "baseline fold 1", "stage": "train" | "pretrain",
     "data": COVID_DIR, "cases": FOLD_TRAIN_TXT | null, "general": [DIR, ...],
     "out": RUN_DIR, "cache": CACHE_DIR | null, "result": RESULT_JSON,
     "method": NAME | null, "pretrained": CKPT | null, "device": NAME | null,
     "config": FILE | null, "preset": NAME | null, "overrides": ["section.key=value", ...],
     "resume": false, "overwrite": false, "progress": false}

``stage`` "train" is :func:`~rdcl.training.run.run_training` (``method`` from ``pretrained``,
the shared stage 1, where the method starts from one), "pretrain" is stage 1 alone into
``out``. The configuration is resolved as ``rdcl train`` resolves ``--config``/``--preset``/
``--set`` (:func:`rdcl.config.resolve_config`), then ``train.method`` and ``train.device`` are
set from ``method`` and ``device``. Paths are used as written (relative ones from the parent's
working folder, which the child inherits).

The result file (JSON, written atomically by the child, :func:`write_result`)::

    {"format": 1, "status": "ok" | "refused" | "crashed", "error": LINE, "final": CKPT | null}

"ok": trained, ``final`` the last checkpoint; "refused": the run refused its input (one of
:data:`rdcl.errors.USER_ERRORS`, ``error`` its one line, exit status 2); "crashed": anything else
(``error`` the traceback's last line, exit status 1). Under a launcher with several ranks
(torchrun) global rank 0 writes the result file; another rank writes ``result.rank<K>.json``
beside it only when it fails (torchrun may stop rank 0 before it can report), and
:func:`read_outcome` reads rank 0's report first.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rdcl.config import resolve_config
from rdcl.data.datasets.layout import load_dataset
from rdcl.data.datasets.subset import read_case_list, select_cases
from rdcl.errors import USER_ERRORS, RdclInputError, one_line
from rdcl.fsutil import write_text_atomic
from rdcl.paths import require_dir
from rdcl.training.distributed import env_rank
from rdcl.training.run import run_pretraining, run_training

MODULE = "rdcl.study.unit"
"""The child's module: a launcher runs ``-m rdcl.study.unit UNIT.json``."""

FORMAT = 1
"""The version of the unit and result files."""

UNIT_FILE = "unit.json"
RESULT_FILE = "result.json"
"""The names of a unit's unit and result files in its folder (``CV_DIR/units/<run folder>``)."""

STAGES = ("train", "pretrain")
"""What a unit runs: ``run_training`` or ``run_pretraining``."""

STATUSES = ("ok", "refused", "crashed")
"""How a unit ended (the result file's ``status``)."""

_PROG = f"python -m {MODULE}"


class UnitFileError(RdclInputError):
    """A unit or result file that is not one :func:`write_unit`/:func:`write_result` wrote."""


@dataclass(frozen=True)
class Unit:
    """One training run of the study (the unit file's fields, module docstring)."""

    name: str
    stage: str
    data: str
    out: str
    result: str
    cases: str | None = None
    general: tuple[str, ...] = ()
    cache: str | None = None
    method: str | None = None
    pretrained: str | None = None
    device: str | None = None
    config: str | None = None
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    resume: bool = False
    overwrite: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise UnitFileError(f"unit stage must be one of {list(STAGES)}, found {self.stage!r}")
        if self.resume and self.overwrite:
            raise UnitFileError("a unit resumes or starts again, found both resume and overwrite")

    def to_dict(self) -> dict:
        """The unit file's JSON object."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields["general"], fields["overrides"] = list(self.general), list(self.overrides)
        return {"format": FORMAT, **fields}

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "unit file") -> Unit:
        """Parse the unit file's JSON object; :class:`UnitFileError` names what is wrong."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise UnitFileError(f"{where}: expected a unit of format {FORMAT}, found {found!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known - {"format"})
        if unknown:
            raise UnitFileError(f"{where}: unknown key {unknown[0]!r}")
        kw = {k: v for k, v in d.items() if k in known}
        try:
            kw["general"] = tuple(map(str, kw.get("general", ())))
            kw["overrides"] = tuple(map(str, kw.get("overrides", ())))
            return cls(**kw)
        except TypeError as exc:  # a missing key
            raise UnitFileError(f"{where}: {exc}") from None


def write_unit(unit: Unit, path: str | Path) -> Path:
    """Write ``unit`` to ``path`` atomically and remove the results of an earlier attempt (rank
    0's and the other ranks'), so the result read after the child exits is its own."""
    path = write_text_atomic(path, json.dumps(unit.to_dict(), indent=1) + "\n")
    result = Path(unit.result)
    for old in (result, *_rank_files(result)):
        old.unlink(missing_ok=True)
    return path


def read_unit(path: str | Path) -> Unit:
    """The unit of a unit file; FileNotFoundError or :class:`UnitFileError` (one line)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise UnitFileError(f"cannot parse unit file {path}: {exc}") from None
    return Unit.from_dict(data, f"unit file {path}")


def command(launcher: Sequence[str], unit_file: str | Path) -> list[str]:
    """The child's command line: ``launcher`` (a Python, or e.g. ``torchrun
    --nproc_per_node=4``) running ``-m rdcl.study.unit UNIT.json``."""
    return [*launcher, "-m", MODULE, str(unit_file)]


@dataclass(frozen=True)
class UnitResult:
    """How a unit ended (the result file, module docstring): ``status`` one of
    :data:`STATUSES`, ``error`` the one line of a refusal or crash, ``final`` the trained
    checkpoint."""

    status: str
    error: str = ""
    final: str | None = None

    def to_dict(self) -> dict:
        """The result file's JSON object."""
        return {"format": FORMAT, "status": self.status, "error": self.error, "final": self.final}


def rank_result(result: str | Path, rank: int) -> Path:
    """Where global rank ``rank`` reports: ``result`` for rank 0, else
    ``<stem>.rank<K><suffix>`` beside it."""
    result = Path(result)
    return result if rank == 0 else result.with_name(f"{result.stem}.rank{rank}{result.suffix}")


def write_result(result: UnitResult, path: str | Path) -> Path:
    """Write ``result`` atomically (a reader never sees half a file)."""
    return write_text_atomic(path, json.dumps(result.to_dict()) + "\n")


def read_result(path: str | Path) -> UnitResult | None:
    """The result in ``path``; None when there is none or it is not a result file."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("status") not in STATUSES:
        return None
    final = d.get("final")
    return UnitResult(d["status"], str(d.get("error") or ""), None if final is None else str(final))


def _rank_files(result: Path) -> list[Path]:
    """The other ranks' result files beside ``result``, by rank."""
    found = {}
    for path in result.parent.glob(f"{result.stem}.rank*{result.suffix}"):
        rank = path.name[len(result.stem) + len(".rank") : len(path.name) - len(result.suffix)]
        if rank.isdigit():
            found[int(rank)] = path
    return [found[k] for k in sorted(found)]


def read_outcome(result: str | Path) -> UnitResult | None:
    """How the unit whose rank 0 reports to ``result`` ended: rank 0's result when it failed,
    else the first failed other rank's, else rank 0's success; None when nobody reported."""
    result = Path(result)
    own = read_result(result)
    others = [read_result(p) for p in _rank_files(result)]
    failed = [r for r in (own, *others) if r is not None and r.status != "ok"]
    return failed[0] if failed else own


def train_unit(unit: Unit) -> Path:
    """Run ``unit`` in this process, as ``rdcl train`` runs the same options; returns the final
    checkpoint. Raises what training raises."""
    covid = load_dataset(require_dir(Path(unit.data), "--data folder"))
    if unit.cases is not None:
        covid = select_cases(covid, read_case_list(unit.cases))
    general = [require_dir(Path(g), "--general folder") for g in unit.general]
    overrides = list(unit.overrides)
    if unit.method:
        overrides.append(f"train.method={unit.method}")
    if unit.device:
        overrides.append(f"train.device={unit.device}")
    cfg = resolve_config(unit.config, unit.preset, overrides, dim=covid.dim)
    options = {
        "resume": unit.resume,
        "overwrite": unit.overwrite,
        "cache_dir": None if unit.cache is None else Path(unit.cache),
        "progress": unit.progress,
    }
    out = Path(unit.out)
    if unit.stage == "pretrain":
        return run_pretraining(cfg, general, out, covid=covid, **options)
    pretrained = None if unit.pretrained is None else Path(unit.pretrained)
    return run_training(cfg, covid, general, out, pretrained=pretrained, **options)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if any(c.isalnum() for c in ln)]
    return lines[-1] if lines else "(no output)"


def run_unit_file(path: str | Path) -> int:
    """Run the unit of unit file ``path`` and write its result file (module docstring); returns
    the exit status: 0 trained, 2 refused, 1 crashed."""
    unit = read_unit(path)
    try:
        final = train_unit(unit)
    except USER_ERRORS as exc:
        result, code = UnitResult("refused", one_line(exc)), 2
        print(f"{_PROG}: error: {result.error}", file=sys.stderr)
    except ImportError as exc:  # a capability this installation lacks: not the input's fault.
        # rdcl cv has always shown it as the line the training command printed for it.
        result, code = UnitResult("crashed", f"rdcl train: error: {one_line(exc)}"), 1
        print(result.error, file=sys.stderr)
    except Exception:
        text = traceback.format_exc()
        sys.stderr.write(text)
        result, code = UnitResult("crashed", _last_line(text)), 1
    else:
        result, code = UnitResult("ok", final=str(final)), 0
    rank = env_rank()
    if rank == 0 or code != 0:
        write_result(result, rank_result(unit.result, rank))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rdcl.study.unit UNIT.json``: :func:`run_unit_file`; a unit file that cannot be
    read is one error line with exit status 2 (no result file: it names none)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: {_PROG} UNIT.json", file=sys.stderr)
        return 2
    try:
        return run_unit_file(args[0])
    except USER_ERRORS as exc:  # only reading the unit file raises: training's are reported
        print(f"{_PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
