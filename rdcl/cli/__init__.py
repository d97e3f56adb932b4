"""The ``rdcl`` command line: one subcommand per pipeline step.

Each subcommand lives in a small module (``rdcl/cli/<group>.py``) that registers its parser and a
handler; handlers import the heavy modules (torch, SimpleITK, the model) only when they run, so
``rdcl --help`` is quick. Errors caused by the user's input print one line,
``rdcl <command>: error: <message>``, to stderr and exit with status 2: the typed
:class:`rdcl.errors.RdclInputError` family (bad datasets, images, configs, checkpoints, argument
values, a diverged run) and :class:`OSError` (missing files, permission denied, outputs that
exist without ``--overwrite``). Any other exception, a plain ``ValueError`` included, is a bug in
rdcl and keeps its traceback. Handlers validate their inputs before writing anything. Logging is
configured here and nowhere else in rdcl.

Adding a command (e.g. ``export``, ``cv``): write ``rdcl/cli/<group>.py`` with a ``COMMANDS``
tuple of :class:`~rdcl.cli.common.Command` records and list it in :data:`COMMANDS` below.

Exit status: 0 success, 2 a user error (one line), 1 a bug (Python's traceback) or a missing
optional capability (an ``ImportError`` such as a metric engine built without CUDA: one line),
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator, Sequence

from rdcl import __version__
from rdcl.cli import cv, data, demo, download, export, predict, train
from rdcl.cli.common import Command
from rdcl.errors import USER_ERRORS, one_line

logger = logging.getLogger("rdcl.cli")

COMMANDS: tuple[Command, ...] = (
    *demo.COMMANDS,  # the front door
    *data.COMMANDS,
    *train.COMMANDS,
    *predict.COMMANDS,
    *export.COMMANDS,
    *cv.COMMANDS,
    *download.COMMANDS,
)
"""Subcommands in the order ``rdcl --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``rdcl <cmd>: error: <message>``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``rdcl`` parser with every subcommand registered."""
    parser = _Parser(
        prog="rdcl",
        description=(
            "Relation-driven collaborative learning for COVID-19 CT lung-infection "
            "segmentation (Zhang et al., arXiv:2012.15564)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rdcl {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    noise = common.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    noise.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(p)
        p.set_defaults(handler=cmd.run)
    return parser


HOLD_SECONDS = 10.0
"""How long :class:`_HoldingHandler` holds a warning back before showing it anyway."""


class _HoldingHandler(logging.StreamHandler):
    """A stderr handler that holds warnings back for up to :data:`HOLD_SECONDS`.

    A warning that comes just before a user error (``skipping a.nii.gz: no mask`` and then
    ``no cases found``) would make the error two lines; :func:`main` then drops the held
    warnings and names the first in the error line instead. Held warnings are written, in order,
    before the next non-warning message, when the command ends without a user error, or after
    :data:`HOLD_SECONDS` (so a long run still shows them while it runs)."""

    def __init__(self, stream: object, *, hold: bool) -> None:
        super().__init__(stream)  # type: ignore[arg-type]
        self.hold = hold
        self._held: list[logging.LogRecord] = []
        self._held_lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.hold and record.levelno >= logging.WARNING:
            with self._held_lock:
                self._held.append(record)
                if self._timer is None:
                    self._timer = threading.Timer(HOLD_SECONDS, self.show_held)
                    self._timer.daemon = True
                    self._timer.start()
            return
        self.show_held()
        super().emit(record)

    def take(self) -> list[logging.LogRecord]:
        """The held records, removed (they will not be written)."""
        with self._held_lock:
            held, self._held = self._held, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        return held

    def show_held(self) -> None:
        """Write the held records now."""
        for record in self.take():
            super().emit(record)


@contextlib.contextmanager
def _command_logging(verbose: bool, quiet: bool, command: str) -> Iterator[_HoldingHandler]:
    """The command's own messages at INFO, the library's at WARNING (all at DEBUG with
    ``--verbose``; WARNING only with ``--quiet``), so a failing command prints one line.

    ``rdcl demo`` also shows the demo pipeline's stage messages (with timings) at INFO.
    The previous state of the ``rdcl`` loggers is restored afterwards, so calling :func:`main`
    from Python (or from tests) leaves the caller's logging untouched."""
    handler = _HoldingHandler(sys.stderr, hold=not verbose)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("rdcl")
    own = [logging.getLogger("rdcl.cli")]
    if command == "demo":
        own.append(logging.getLogger("rdcl.demo"))
    saved = (root.handlers[:], root.propagate, root.level, [lg.level for lg in own])
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for lg in own:
        lg.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    try:
        yield handler
    finally:
        handler.take()  # main has released or folded them; a timer must not outlive the command
        root.handlers[:], root.propagate = saved[0], saved[1]
        root.setLevel(saved[2])
        for lg, level in zip(own, saved[3], strict=True):
            lg.setLevel(level)


def _missing_capability(exc: BaseException) -> bool:
    """An optional capability this installation lacks (a CUDA engine, an optional package):
    not the input's fault and not a bug, reported in one line with exit status 1."""
    return isinstance(exc, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rdcl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that relaunch rdcl
    prog = f"rdcl {args.command}"
    with _command_logging(args.verbose, args.quiet, args.command) as handler:
        try:
            code = int(args.handler(args) or 0)
            handler.show_held()
            return code
        except KeyboardInterrupt:
            handler.show_held()
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            user = isinstance(exc, USER_ERRORS)
            if not (user or _missing_capability(exc)):
                handler.show_held()
                raise
            logger.debug("traceback of the error below", exc_info=True)
            held = handler.take()
            print(f"{prog}: error: {one_line(exc)}{_held_note(held)}", file=sys.stderr)
            return 2 if user else 1


def _held_note(held: list[logging.LogRecord]) -> str:
    """What the error line says about the warnings held back before it (none: nothing)."""
    if not held:
        return ""
    first = " ".join(held[0].getMessage().split())
    first = first if len(first) <= 160 else first[:157] + "..."
    more = f"; {len(held) - 1} more with -v" if len(held) > 1 else ""
    return f" (after the warning: {first}{more})"
