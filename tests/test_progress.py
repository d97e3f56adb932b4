"""Off a terminal, progress is a plain line every few seconds, not a redrawn bar (issue 11,
item 25: one ``rdcl demo`` log held 272 KB of bar redraws)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from rdcl.progress import ProgressLine, progress_bar


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_one_line_per_interval_and_one_at_the_end():
    out, clock = io.StringIO(), _Clock()
    with ProgressLine(total=10_000, desc="train", unit="steps", stream=out, interval=5.0,
                      clock=clock) as bar:  # fmt: skip
        for _ in range(10_000):
            clock.t += 0.01  # 100 s in all
            bar.update(1)
            bar.set_postfix(loss="0.1234")
    lines = out.getvalue().splitlines()
    assert 20 <= len(lines) <= 21  # every 5 s, plus the final line
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith("train: 10000/10000 steps (100%)") and "loss=0.1234" in lines[-1]


def test_iterating_writes_the_final_count():
    out, clock = io.StringIO(), _Clock()
    items = list(ProgressLine(range(3), desc="predict", unit="cases", stream=out, clock=clock))
    assert items == [0, 1, 2]
    assert out.getvalue() == "predict: 3/3 cases (100%)\n"


def test_terminal_gets_a_bar_and_disable_prints_nothing():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from tqdm import tqdm

    assert isinstance(progress_bar(total=3, stream=Tty()), tqdm)
    assert isinstance(progress_bar(total=3, stream=io.StringIO()), ProgressLine)
    quiet = io.StringIO()
    with progress_bar(total=3, stream=quiet, disable=True) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [False, True], ids=["line", "bar"])
def test_an_error_in_the_loop_leaves_no_progress_line(tty):
    """Issue 18: a progress line must not come before the error that stops the work."""
    out = _Tty() if tty else io.StringIO()

    def run() -> None:
        for i in progress_bar(range(3), desc="predict", unit="cases", stream=out):
            if i == 1:
                raise RuntimeError("bad case")

    with pytest.raises(RuntimeError):
        run()
    # a cleared tqdm bar ends in a carriage return with nothing after it; the plain line writer
    # writes nothing at all
    assert "predict" not in out.getvalue().rsplit("\r", 1)[-1]
    if not tty:
        assert out.getvalue() == ""
    block = io.StringIO()
    with pytest.raises(RuntimeError), progress_bar(total=3, desc="train", stream=block) as bar:
        bar.update(2)
        raise RuntimeError("diverged")
    assert block.getvalue() == ""
    done = io.StringIO()
    assert list(progress_bar(range(2), desc="predict", stream=done)) == [0, 1]
    assert done.getvalue().startswith("predict: 2/2")  # success still ends with its line


def test_non_tty_training_log_stays_small(tmp_path):
    """A real ``rdcl train`` with stderr in a file: a few short lines, no carriage returns."""
    data = tmp_path / "covid"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RDCL_PROGRESS_SECONDS": "3600"}
    rdcl = [sys.executable, "-m", "rdcl"]
    synth = ["synth", "--out", str(data), "--kind", "covid", "--dim", "2", "--shape", "64,64",
             "--cases", "2", "--test", "1", "-q"]  # fmt: skip
    subprocess.run([*rdcl, *synth], check=True, env=env)
    train = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny2d",
             "--method", "baseline", "--set", "train.steps=20", "--device", "cpu"]  # fmt: skip
    log = tmp_path / "train.log"
    with log.open("w") as fh:
        subprocess.run([*rdcl, *train], check=True, env=env, stderr=fh, stdout=fh)
    text = log.read_text()
    assert "\r" not in text, text[:500]
    assert "train: 20/20 steps (100%)" in text
    assert len(text) < 2000, text
