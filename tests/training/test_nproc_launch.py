"""``rdcl train --nproc-per-node N``: bad configs are one line before any rank starts, and a
failure of the ranks ends with rdcl's exit status and one line, not torchrun's traceback (issue
18, item 5: under torchrun a broken YAML, steps=abc, an unknown key or a batch smaller than the
number of processes ended with exit 1 and torchrun's ChildFailedError)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rdcl.cli import main
from rdcl.cli.launch import OutputFilter, run_torchrun, strip_option

TORCHRUN_FAILURE = """\
rdcl train: error: nothing to resume in r: no last.ckpt
rdcl train: error: nothing to resume in r: no last.ckpt
W1202 02:14:38.530000 10117 torch/distributed/elastic/multiprocessing/api.py:900] Sending process 10118 closing signal SIGTERM
E1202 02:14:38.600000 10117 torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: 2) local_rank: 0
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/x/torch/distributed/run.py", line 936, in <module>
    main()
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
rdcl FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
============================================================
"""  # noqa: E501

RANK_CRASH = """\
train: 1/2 steps (50%)
Traceback (most recent call last):
  File "/x/rdcl/training/loop.py", line 3, in run_stage
    boom()
RuntimeError: a bug in rdcl
"""


def _filtered(text: str) -> tuple[str, list[str]]:
    filt = OutputFilter()
    shown = [out for line in io.StringIO(text) for out in filt.feed(line)] + filt.close()
    return "".join(shown), filt.errors


def test_filter_folds_rank_errors_and_drops_torchrun_report():
    shown, errors = _filtered(TORCHRUN_FAILURE)
    assert shown == ""
    assert errors == ["nothing to resume in r: no last.ckpt"]


def test_filter_keeps_progress_and_a_rank_crash_traceback():
    shown, errors = _filtered(RANK_CRASH + TORCHRUN_FAILURE.split("\n", 2)[2])
    assert shown == RANK_CRASH and errors == []


def test_strip_option():
    argv = ["train", "--nproc-per-node", "2", "--out", "x", "--nproc-per-node=3", "-q"]
    assert strip_option(argv, "--nproc-per-node") == ["train", "--out", "x", "-q"]


@pytest.fixture(scope="module")
def covid(tmp_path_factory) -> Path:
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("nproc")
    return Path(synthesize_dataset(root / "covid", kind="covid", n_cases=2, dim=2,
                                   shape=(40, 40), seed=0))  # fmt: skip


def _argv(covid: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "-q", "--data", str(covid), "--out", str(out), "--preset", "tiny2d",
            "--method", "baseline", "--set", "train.steps=2", "--set", "train.device=cpu",
            "--set", "data.patch_size=[32,32]", "--nproc-per-node", "2", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.steps=abc"], "train.steps: expected an integer"),
        (["--set", "train.zzz=1"], "unknown config key 'train.zzz'"),
        (["--set", "data.batch_size=1"], "multiple of the number of ranks"),
        (["--config", "BROKEN"], "cannot parse config file"),
    ],
    ids=["steps_abc", "unknown_key", "batch_below_ranks", "broken_yaml"],
)
def test_bad_config_is_one_line_before_any_rank(tmp_path, capsys, monkeypatch, covid, extra,
                                                message):  # fmt: skip
    import rdcl.cli.launch as launch

    def no_ranks(*args, **kwargs):
        raise AssertionError("torchrun must not start")

    monkeypatch.setattr(launch, "run_torchrun", no_ranks)
    if extra[0] == "--config":
        broken = tmp_path / "broken.yaml"
        broken.write_text("model: [\n")
        extra = ["--config", str(broken)]
        argv = [a for a in _argv(covid, tmp_path / "run") if a != "tiny2d" and a != "--preset"]
    else:
        argv = _argv(covid, tmp_path / "run")
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rdcl train: error: ") and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_user_error_of_the_ranks_is_rdcl_s_line_and_status(tmp_path, capsys, monkeypatch, covid):
    """Two gloo ranks start and refuse ``--resume`` of nothing: exit 2 and one line."""
    pytest.importorskip("torch.distributed.run")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    argv = [*_argv(covid, out, "--set", "data.batch_size=2", "--resume")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rdcl train: error: nothing to resume in {out}: no last.ckpt or final.ckpt "
                   "of a stopped run; expected the folder of a run that was started before, or "
                   "no --resume to start one"], err  # fmt: skip


def test_run_torchrun_reports_a_crash_with_status_1(monkeypatch):
    import subprocess
    import sys

    class Fake:
        def __init__(self, cmd, **kwargs):
            assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
            self.stderr = io.StringIO(RANK_CRASH + TORCHRUN_FAILURE.split("\n", 2)[2])

        def wait(self):
            return 1

    monkeypatch.setattr(subprocess, "Popen", Fake)
    stream = io.StringIO()
    assert run_torchrun(2, ["train"], stream=stream) == 1
    assert (
        stream.getvalue() == RANK_CRASH + "rdcl train: error: torchrun failed with exit status 1\n"
    )
