"""``rdcl train --nproc-per-node N``: data-parallel training through torchrun, with rdcl's checks
first and rdcl's exit status and last line at the end (issue 18, item 5).

Started directly, ``torchrun -m rdcl train`` with a bad config ends with exit status 1 and
torchrun's own ``ChildFailedError`` traceback after every rank's one line. Here the parent
process checks the configuration, the data and the batch split over N ranks before any rank
starts, then runs torchrun (``python -m torch.distributed.run``) with the same arguments. What the
ranks print is passed through as it comes, except torchrun's failure report (its traceback, the
``ChildFailedError`` banner, its process-signal log lines) and the ranks' identical error lines,
which are folded into one: a user error of the ranks is rdcl's one line with exit status 2, a
crash keeps the rank's traceback with exit status 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Sequence

from rdcl.errors import RdclInputError

_TORCHRUN_LOG = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ \d+ .*torch/distributed/")
"""torchrun's glog-style lines (``W1202 02:14:38.123 4611 torch/distributed/...] ...``)."""

ELASTIC_ERROR = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"
"""The exception torchrun reports when a rank failed (its failure report follows)."""

ERROR_LINE = re.compile(r"^rdcl [\w-]+: error: (.*)$")


def strip_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


class OutputFilter:
    """Sorts torchrun's stderr lines: :meth:`feed` returns the lines to show now; rdcl's error
    lines are collected in :attr:`errors` (each once) and torchrun's failure report dropped."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._traceback: list[str] | None = None
        self._dropping = False

    def feed(self, line: str) -> list[str]:
        """The lines (with their newline) to show for one input ``line``."""
        text = line.rstrip("\n")
        if self._dropping:
            return []
        if self._traceback is not None:
            self._traceback.append(line)
            if text and not text[0].isspace() and not text.startswith(("Traceback", "During")):
                block, self._traceback = self._traceback, None
                if text.startswith(ELASTIC_ERROR):
                    self._dropping = True  # the banner of the failed ranks follows: all noise
                    return []
                return block
            return []
        if text.startswith("Traceback (most recent call last):"):
            self._traceback = [line]
            return []
        m = ERROR_LINE.match(text)
        if m:
            if m.group(1) not in self.errors:
                self.errors.append(m.group(1))
            return []
        if _TORCHRUN_LOG.match(text) or set(text.strip()) == {"*"}:
            return []
        return [line]

    def close(self) -> list[str]:
        """Lines held at the end (an unfinished traceback)."""
        block, self._traceback = self._traceback or [], None
        return block


def check_rank_split(batch_size: int, ranks: int, *, option: str = "--nproc-per-node") -> int:
    """The per-rank batch of the global ``batch_size`` (``data.batch_size``) over ``ranks``
    processes, checked before any rank starts (``rdcl train --nproc-per-node``); raises a
    one-line :class:`~rdcl.errors.ConfigError` naming ``option`` (the setting that gives the
    rank count) when it does not divide."""
    from rdcl.training.distributed import per_rank_batch

    return per_rank_batch(batch_size, ranks, option=option)


def run_torchrun(nproc: int, argv: Sequence[str], *, stream=None) -> int:
    """Run ``python -m torch.distributed.run --nproc_per_node=nproc -m rdcl *argv`` and return 0
    when every rank succeeded, or 1 after a crash (its traceback shown); raises
    :class:`RdclInputError` with the ranks' one error line after a user error."""
    stream = sys.stderr if stream is None else stream
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "rdcl", *argv]
    filt = OutputFilter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stderr is not None
    try:
        _forward(proc.stderr, filt, stream)
    finally:
        code = proc.wait()
    for line in filt.close():
        stream.write(line)
    if code == 0:
        return 0
    if filt.errors:
        raise RdclInputError(filt.errors[0])
    stream.write(f"rdcl train: error: torchrun failed with exit status {code}\n")
    return 1


def _forward(lines: Iterable[str], filt: OutputFilter, stream) -> None:
    for line in lines:
        for out in filt.feed(line):
            stream.write(out)
        stream.flush()
