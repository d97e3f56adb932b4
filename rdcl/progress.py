"""Progress reporting that suits where stderr goes.

On a terminal, :func:`progress_bar` is a ``tqdm`` bar redrawn in place. Off a terminal (CI, nohup,
job schedulers, ``2> log``) every redraw of a bar would be kept in the log (a ``rdcl demo`` log
grew to 272 KB), so a :class:`ProgressLine` writes one plain line instead at most every
``RDCL_PROGRESS_SECONDS`` seconds (default 10) and once at the end::

    train: 120/500 steps (24%), 3.1 steps/s, loss=0.4132

Both offer the part of tqdm's interface rdcl uses: iteration, ``update``, ``set_postfix``,
``close`` and use as a context manager. When the work stops with an error (the loop body or the
``with`` block raises), neither leaves a last progress line: the error is the last thing printed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

ENV_SECONDS = "RDCL_PROGRESS_SECONDS"
"""Environment variable: seconds between progress lines off a terminal (default 10)."""

DEFAULT_SECONDS = 10.0


def _interval() -> float:
    try:
        value = float(os.environ.get(ENV_SECONDS, DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return value if value >= 0 else DEFAULT_SECONDS


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    stream: TextIO | None = None,
) -> Any:
    """A tqdm bar on a terminal, a :class:`ProgressLine` elsewhere (nothing when ``disable``).

    Args:
        iterable: items to iterate over (``total`` defaults to its length when it has one).
        total: number of units of the whole task.
        desc: what is progressing (``"train"``, ``"predict"``).
        unit: unit name (``"it"``, ``"case"``; ``"steps"`` reads well for training).
        initial: units already done (a resumed run).
        disable: report nothing.
        stream: where to write (default ``sys.stderr`` at call time).
    """
    stream = sys.stderr if stream is None else stream
    if disable or _is_terminal(stream):
        return _bar_class()(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            initial=initial,
            disable=disable,
            file=stream,
        )
    return ProgressLine(iterable, total=total, desc=desc, unit=unit, initial=initial, stream=stream)


def _bar_class() -> type:
    """tqdm, except that a bar left by an error (the loop body raised, or the ``with`` block) is
    cleared instead of kept, so the error line is the last thing on the terminal."""
    from tqdm import tqdm

    class _Bar(tqdm):
        def __iter__(self) -> Iterator[Any]:
            inner = super().__iter__()
            try:
                for item in inner:  # noqa: UP028 (yield from would close inner first)
                    yield item
            except GeneratorExit:  # the consumer stopped: an error, or a break
                self.leave = False
                inner.close()
                raise

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type is not None:
                self.leave = False
            super().__exit__(exc_type, *rest)

    return _Bar


class ProgressLine:
    """Plain progress lines, at most one per ``interval`` seconds plus one at the end.

    Args:
        iterable, total, desc, unit, initial, stream: as for :func:`progress_bar`.
        interval: seconds between lines (default ``RDCL_PROGRESS_SECONDS`` or 10).
        clock: time source in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.interval = _interval() if interval is None else float(interval)
        self._clock = clock
        self._t0 = self._last = clock()
        self._postfix = ""
        self._closed = False
        self._written_n: int | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("ProgressLine was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except GeneratorExit:
            # the consumer stopped early (its loop body raised, or broke off): no final line,
            # so an error message is not preceded by a progress line
            self._closed = True
            raise
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; writes a line when ``interval`` seconds have passed."""
        self.n += int(n)
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the counts (e.g. ``loss="0.41"``) in the next line."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Write the final line (once) when anything was done."""
        if self._closed:
            return
        self._closed = True
        if self.n > self._start and self._written_n != self.n:
            self._write(self._clock())

    def _write(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = now - self._t0
        rate = f", {(self.n - self._start) / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self._postfix}" if self._postfix else ""
        name = f"{self.desc}: " if self.desc else ""
        try:
            self.stream.write(f"{name}{count} {self.unit}{pct}{rate}{extra}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the work
            pass
        self._written_n = self.n

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:  # an error ends the block: it, not a progress line, is last
            self._closed = True
        self.close()
