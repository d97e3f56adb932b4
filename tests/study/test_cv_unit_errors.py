"""``rdcl cv`` reports its runs' user errors as rdcl's one line (issue 18, item 5): a batch that
does not split over the ``--launcher``'s ranks is refused before the study folder is written,
and a unit that refuses its input (its result file says "refused") makes cv exit 2 with its
line, while a crash (result "crashed", or a process that died without a result) stays exit 1
with the unit's last line. The unit's process and its result files (issue 19, item 4)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from rdcl.cli import main
from rdcl.errors import RdclInputError
from rdcl.study import unit as units
from rdcl.study.runner import (
    StudyPlan,
    StudyRunError,
    StudyUnitInputError,
    launch,
    launcher_ranks,
)
from rdcl.study.splits import make_split

TINY = [
    "--preset", "tiny2d", "--set", "train.steps=2", "--set", "train.pretrain_steps=2",
    "--set", "train.device=cpu", "--set", "data.patch_size=[32,32]",
]  # fmt: skip

TORCHRUN_REPORT = """\
W1202 02:14:38.530000 10117 torch/distributed/elastic/multiprocessing/api.py:900] Sending process 10118 closing signal SIGTERM
Traceback (most recent call last):
  File "/x/torch/distributed/run.py", line 936, in <module>
    main()
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
rdcl FAILED
------------------------------------------------------------
"""  # noqa: E501

RANK_USER_ERROR = "rdcl train: error: training diverged at step 3 (train): lower train.lr\n" * 2

RANK_CRASH = """\
Traceback (most recent call last):
  File "/x/rdcl/training/loop.py", line 3, in run_stage
    boom()
RuntimeError: a bug in rdcl
"""


@pytest.fixture(scope="module")
def covid(tmp_path_factory) -> Path:
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("cvunit")
    synthesize_dataset(root / "covid", kind="covid", n_cases=4, dim=2, shape=(40, 40), seed=0)
    return root / "covid"


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["cv", "-q", "--data", str(data), "--out", str(out), "--folds", "2",
            "--train-per-fold", "2", "--fold", "1", "--methods", "baseline", *TINY,
            *extra]  # fmt: skip


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_launcher_ranks():
    assert launcher_ranks(["torchrun", "--nproc_per_node=3"]) == 3
    assert launcher_ranks([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "2", "--nnodes=2"]) == 4  # fmt: skip
    assert launcher_ranks(["torchrun", "--standalone"]) is None  # torchrun's default: 1 rank
    assert launcher_ranks(["torchrun", "--nproc_per_node=auto"]) is None  # only torchrun knows
    assert launcher_ranks(["torchrun", "--nproc_per_node=2", "--nnodes=1:4"]) is None


@pytest.mark.parametrize("nproc", ["3", "8"], ids=["not_a_divisor", "above_batch"])
def test_batch_not_split_over_launcher_ranks_is_refused_before_writing(tmp_path, capsys, covid,
                                                                       nproc):  # fmt: skip
    out = tmp_path / "cv"
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node={nproc}"
    assert main(_argv(covid, out, "--launcher", launcher)) == 2  # tiny2d: data.batch_size=4
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("rdcl cv: error: "), err
    assert f"expected a multiple of {nproc}, found 4" in err[0]
    assert f"--nproc_per_node={nproc}" in err[0]  # names the launcher, not train's option
    assert not out.exists()


def _unit(tmp_path: Path, **kw) -> units.Unit:
    fields = {
        "name": "baseline fold 1",
        "stage": "train",
        "data": str(tmp_path / "no_data"),
        "out": str(tmp_path / "run"),
        "result": str(tmp_path / "u" / "result.json"),
    }
    return units.Unit(**{**fields, **kw})  # fmt: skip


def test_unit_process_reports_a_refusal_and_a_crash(tmp_path, monkeypatch, capsys):
    """The child's side, in this process: one result file, rank 0's, or a failed rank's."""
    unit = _unit(tmp_path)
    path = units.write_unit(unit, tmp_path / "u" / units.UNIT_FILE)
    assert units.main([str(path)]) == 2  # the data folder does not exist: rdcl's one line
    refused = units.read_result(unit.result)
    assert refused.status == "refused" and refused.final is None
    assert refused.error == f"--data folder not found: {tmp_path / 'no_data'}"
    assert capsys.readouterr().err.strip().endswith(refused.error)

    def crash(unit):
        raise RuntimeError("a bug in rdcl")

    monkeypatch.setattr(units, "train_unit", crash)
    assert units.main([str(path)]) == 1
    crashed = units.UnitResult("crashed", "RuntimeError: a bug in rdcl")
    assert units.read_result(unit.result) == crashed
    assert "Traceback" in capsys.readouterr().err
    # another rank reports only a failure, beside rank 0's file; rank 0's failure comes first
    monkeypatch.setenv("RANK", "1")
    assert units.main([str(path)]) == 1
    assert units.read_result(Path(unit.result).with_name("result.rank1.json")) == crashed
    monkeypatch.setattr(units, "train_unit", lambda unit: Path(unit.out) / "final.ckpt")
    units.write_unit(unit, path)  # a new attempt clears every rank's old result
    assert units.main([str(path)]) == 0 and units.read_outcome(unit.result) is None
    monkeypatch.setenv("RANK", "0")
    assert units.main([str(path)]) == 0
    ok = units.UnitResult("ok", final=str(Path(unit.out) / "final.ckpt"))
    assert units.read_outcome(unit.result) == ok
    units.write_result(units.UnitResult("refused", "bad"), tmp_path / "u" / "result.rank3.json")
    assert units.read_outcome(unit.result) == units.UnitResult("refused", "bad")
    # a unit file that cannot be read is one line (it names no result file to write)
    (tmp_path / "bad.json").write_text("{}")
    assert units.main([str(tmp_path / "bad.json")]) == 2
    assert "expected a unit of format 1" in capsys.readouterr().err


def _child(tmp_path: Path, output: str, code: int, results: dict[str, dict] | None = None) -> str:
    """A launcher program that ignores its command but the unit file: writes ``results`` (file
    name -> result object) beside the unit file, prints ``output`` and exits ``code``."""
    (tmp_path / "said.txt").write_text(output)
    script = tmp_path / "launcher.py"
    script.write_text(
        "import json, pathlib, sys\n"
        "unit = pathlib.Path(sys.argv[-1])\n"
        f"for name, result in {results or {}!r}.items():\n"
        "    (unit.parent / name).write_text(json.dumps(result))\n"
        f"sys.stderr.write(pathlib.Path({str(tmp_path / 'said.txt')!r}).read_text())\n"
        f"sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _refused(line: str) -> dict:
    return {"format": 1, "status": "refused", "error": line, "final": None}


def test_launch_raises_a_user_error_for_a_refusal_and_study_run_error_for_a_crash(tmp_path):
    plan = StudyPlan(Path("/d/covid"), [], tmp_path / "cv", [], make_split(["a", "b", "c"], 1, 1))
    run = plan.run_dir("baseline", 0)
    unit = units.Unit("baseline fold 1", "train", "/d/covid", str(run),
                      str(plan.unit_dir(run) / units.RESULT_FILE))  # fmt: skip

    def launch_with(*child) -> Path:
        plan.launcher = [sys.executable, _child(tmp_path, *child)]
        return launch(plan, unit)

    with pytest.raises(StudyUnitInputError, match=r"^baseline fold 1: bad input$") as info:
        launch_with("rdcl train: error: other text\n", 2, {"result.json": _refused("bad input")})
    assert isinstance(info.value, RdclInputError)
    # torchrun stopped rank 0 before it reported: rank 1's refusal counts, torchrun's exit 1 not
    with pytest.raises(StudyUnitInputError, match="training diverged"):
        launch_with(TORCHRUN_REPORT, 1, {"result.rank1.json": _refused("training diverged")})
    crashed = {"format": 1, "status": "crashed", "error": "RuntimeError: a bug in rdcl"}
    with pytest.raises(StudyRunError, match=r"failed \(exit 1\): RuntimeError: a bug in rdcl"):
        launch_with("", 1, {"result.json": crashed})
    # no result (a killed process): the last line of its output
    with pytest.raises(StudyRunError, match=r"failed \(exit 1\): RuntimeError: a bug in rdcl"):
        launch_with(RANK_CRASH, 1)
    with pytest.raises(StudyRunError, match=r"failed \(exit 0\): no result in "):
        launch_with("", 0)
    ok = {"format": 1, "status": "ok", "error": "", "final": str(run / "final.ckpt")}
    assert launch_with("", 0, {"result.json": ok}) == run / "final.ckpt"
    written = json.loads((plan.unit_dir(run) / units.UNIT_FILE).read_text())
    assert written["name"] == "baseline fold 1" and written["format"] == 1


def test_cv_exits_1_with_the_child_line_after_a_crash(tmp_path, capsys, covid):
    launcher = f"{sys.executable} {_child(tmp_path, RANK_CRASH, 1)}"  # no result file
    assert main(_argv(covid, tmp_path / "cv", "--launcher", launcher)) == 1
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("rdcl cv: error: baseline fold 1 failed (exit 1)")
    assert "RuntimeError: a bug in rdcl" in err[0]


def test_cv_exits_2_with_rdcl_line_after_torchrun_ranks_refused(tmp_path, capsys, covid):
    line = "training diverged at step 3 (train): lower train.lr"
    child = _child(tmp_path, RANK_USER_ERROR + TORCHRUN_REPORT, 1, {"result.json": _refused(line)})
    assert main(_argv(covid, tmp_path / "cv", "--launcher", f"{sys.executable} {child}")) == 2
    assert _err_lines(capsys) == [
        "rdcl cv: error: baseline fold 1: training diverged at step 3 (train): lower train.lr"
    ]


def test_cv_exits_2_with_rdcl_line_when_a_unit_diverges(tmp_path, capsys, monkeypatch, covid):
    """A real unit process refusing its run (train.lr=1e4 diverges: exit 2, "refused")."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = _argv(covid, tmp_path / "cv", "--set", "train.lr=1e4", "--set", "train.steps=12")
    assert main(argv) == 2
    err = _err_lines(capsys)
    assert len(err) == 1, err
    assert err[0].startswith("rdcl cv: error: baseline fold 1: training diverged at step ")
    assert "rdcl train: error" not in err[0]
