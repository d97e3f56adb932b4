"""``rdcl cv`` reports its runs' user errors as rdcl's one line (issue 18, item 5): a batch that
does not split over the ``--launcher``'s ranks is refused before the study folder is written,
and a unit's ``rdcl train`` that refuses its input (exit 2) makes cv exit 2 with its line, while
a crash (exit 1) stays exit 1 with the child's line."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from rdcl.cli import main
from rdcl.cli.launch import launcher_ranks
from rdcl.errors import RdclInputError
from rdcl.study.runner import StudyRunError, StudyUnitInputError, _run, user_error_line

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


def test_user_error_line_tells_a_refusal_from_a_crash():
    assert user_error_line(2, "rdcl train: error: bad input\n") == "bad input"
    assert user_error_line(2, "usage: x\nx: error: odd\n") == "x: error: odd"
    assert user_error_line(1, RANK_CRASH) is None  # this Python's crash
    assert user_error_line(1, "rdcl train: error: no CUDA engine\n") is None  # exit 1: no refusal
    torchrun_refusal = RANK_USER_ERROR + TORCHRUN_REPORT  # torchrun exits 1 whatever its ranks did
    assert user_error_line(1, torchrun_refusal) == "training diverged at step 3 (train): lower " \
        "train.lr"  # fmt: skip
    assert user_error_line(1, RANK_CRASH + TORCHRUN_REPORT) is None  # a rank crashed


def _child(tmp_path: Path, output: str, code: int) -> list[str]:
    text = tmp_path / "output.txt"
    text.write_text(output)
    return ["bash", "-c", f"cat {text} >&2; exit {code}"]


def test_run_raises_a_user_error_for_a_refusal_and_study_run_error_for_a_crash(tmp_path):
    with pytest.raises(StudyUnitInputError, match=r"^baseline fold 1: bad input$") as info:
        _run(_child(tmp_path, "rdcl train: error: bad input\n", 2), "baseline fold 1")
    assert isinstance(info.value, RdclInputError)
    with pytest.raises(StudyUnitInputError, match="training diverged"):
        _run(_child(tmp_path, RANK_USER_ERROR + TORCHRUN_REPORT, 1), "baseline fold 1")
    with pytest.raises(StudyRunError, match=r"failed \(exit 1\): RuntimeError: a bug in rdcl"):
        _run(_child(tmp_path, RANK_CRASH, 1), "baseline fold 1")


def _fake_launcher(tmp_path: Path, output: str, code: int) -> str:
    """A launcher program that ignores its command, prints ``output`` and exits ``code``."""
    (tmp_path / "said.txt").write_text(output)
    script = tmp_path / "launcher.sh"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'said.txt'} >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_cv_exits_1_with_the_child_line_after_a_crash(tmp_path, capsys, covid):
    launcher = _fake_launcher(tmp_path, RANK_CRASH, 1)
    assert main(_argv(covid, tmp_path / "cv", "--launcher", launcher)) == 1
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("rdcl cv: error: baseline fold 1 failed (exit 1)")
    assert "RuntimeError: a bug in rdcl" in err[0]


def test_cv_exits_2_with_rdcl_line_after_torchrun_ranks_refused(tmp_path, capsys, covid):
    launcher = _fake_launcher(tmp_path, RANK_USER_ERROR + TORCHRUN_REPORT, 1)
    assert main(_argv(covid, tmp_path / "cv", "--launcher", launcher)) == 2
    assert _err_lines(capsys) == [
        "rdcl cv: error: baseline fold 1: training diverged at step 3 (train): lower train.lr"
    ]


def test_cv_exits_2_with_rdcl_line_when_a_unit_diverges(tmp_path, capsys, monkeypatch, covid):
    """A real ``rdcl train`` child refusing its run (train.lr=1e4 diverges: exit 2)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = _argv(covid, tmp_path / "cv", "--set", "train.lr=1e4", "--set", "train.steps=12")
    assert main(argv) == 2
    err = _err_lines(capsys)
    assert len(err) == 1, err
    assert err[0].startswith("rdcl cv: error: baseline fold 1: training diverged at step ")
    assert "rdcl train: error" not in err[0]
