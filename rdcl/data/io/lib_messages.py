"""Capture what SimpleITK's C/C++ libraries print to stderr, so that rdcl says it in one line.

ITK warnings (``WARNING: In .../itkNiftiImageIO.cxx, line 2008 ...``), niftilib's ``** ERROR``,
MetaIO's ``MetaImage: M_ReadElementsData: data not read completely`` and GDCM's messages are written
straight to file descriptor 2 by C/C++ code, before rdcl can report the problem. Every SimpleITK
call in :mod:`rdcl.data.io.image` runs inside :func:`captured_stderr`; the captured text is folded
into rdcl's own error message, or logged as one rdcl warning line when the call succeeded.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

_LOCK = threading.RLock()
_MAX = 1 << 16


class Captured:
    """What a :func:`captured_stderr` block printed: ``text`` (raw) and :meth:`summary`."""

    def __init__(self) -> None:
        self.text = ""

    def lines(self) -> list[str]:
        """The meaningful lines, source locations and object addresses dropped, deduplicated."""
        out: list[str] = []
        for line in self.text.splitlines():
            line = line.strip()
            if not line or re.match(r"^(WARNING|ERROR): In .*, line \d+$", line):
                continue
            line = re.sub(r"^\w+ \(0x[0-9a-f]+\): ", "", line)  # "NiftiImageIO (0x55..): "
            line = re.sub(r"\s+", " ", line)
            if line not in out:
                out.append(line)
        return out

    def summary(self, limit: int = 3) -> str:
        """At most ``limit`` meaningful lines joined with ``"; "`` (empty string when none)."""
        lines = self.lines()
        more = f"; ... ({len(lines) - limit} more)" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more


@contextlib.contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 to a temp file for the block; yields a :class:`Captured` that
    holds the text once the block ends. Blocks are serialised by a process-wide lock (fd 2 is
    shared by all threads); Python's own ``sys.stderr`` is flushed first so nothing is lost."""
    captured = Captured()
    with _LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (e.g. a daemon): nothing to capture
            yield captured
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                captured.text = tmp.read(_MAX).decode("utf-8", errors="replace")
