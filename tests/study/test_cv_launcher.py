"""``rdcl cv --launcher``: each training run started through torchrun (2 gloo ranks on the CPU),
and a failed run's reason found in the launcher's output."""

from __future__ import annotations

import json
import sys

import pytest

from rdcl.cli import main
from rdcl.study.runner import failure_line

TORCHRUN_OUTPUT = """\
rdcl train: error: the data folder /x holds no cases; expected images
W1202 02:14:38 api.py:1028] Sending process 10117 closing signal SIGTERM
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
rdcl FAILED
------------------------------------------------------------
"""


def test_failure_line_prefers_rdcl_error_over_launcher_banner():
    assert failure_line(TORCHRUN_OUTPUT).startswith("rdcl train: error: the data folder")
    assert failure_line("Traceback\n  x\nValueError: bad\n=====\n") == "ValueError: bad"
    assert failure_line("") == "(no output)"


def test_cv_runs_training_through_torchrun(tmp_path, monkeypatch):
    pytest.importorskip("torch.distributed.run")
    from rdcl.data.synth import synthesize_dataset

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    synthesize_dataset(tmp_path / "covid", kind="covid", n_cases=4, dim=2, shape=(40, 40), seed=0)
    out = tmp_path / "cv"
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node=2"
    argv = ["cv", "-q", "--data", str(tmp_path / "covid"), "--out", str(out), "--folds", "2",
            "--train-per-fold", "2", "--fold", "1", "--methods", "baseline", "--preset", "tiny2d",
            "--set", "train.steps=2", "--set", "data.patch_size=[32,32]", "--set",
            "train.device=cpu", "--set", "data.batch_size=2", "--launcher", launcher]  # fmt: skip
    assert main(argv) == 0
    run = out / "runs/baseline/fold_1"
    record = json.loads((run / "config.json").read_text())["run"]
    assert record["world_size"] == 2 and record["per_rank_batch"] == 1
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == [1, 2]  # rank 0 alone logs, each step once
    assert all(e["world_size"] == 2 for e in logged)
    assert len((run / "scores.csv").read_text().splitlines()) == 1 + 2  # header + 2 test cases
