"""Fixtures for the relation-kernel tests, and the child process that runs the interpreter tests.

A process runs the Triton kernels either compiled or in the CPU interpreter, chosen once when
``rdcl.kernels`` is imported (``rdcl.kernels.runtime.INTERPRETING``). A test that needs the
interpreter takes the ``interpret`` fixture. In a process that does not interpret (the usual
test run) those tests are run together in one child pytest process with ``TRITON_INTERPRET=1``
(the first of them to run starts it), and each reports the child's outcome for the same test id:
passed, skipped with the child's reason, or failed with the child's report. In a process started
with ``TRITON_INTERPRET=1`` they run in place, and the tests that need the compiler skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from rdcl.kernels import runtime

RESULTS_ENV = "RDCL_INTERPRETER_RESULTS"
"""Set in the child process: the JSON-lines file its test reports go to."""

_child_results: dict[str, dict] | None = None  # nodeid -> outcome, longrepr (main process)


@pytest.fixture
def interpret() -> None:
    """The test runs the Triton path on CPU tensors in Triton's interpreter (in this process when
    it interprets, otherwise in the child process)."""
    if not runtime.HAS_TRITON:
        pytest.skip("triton is not installed (pip install 'triton>=3.8')")
    if runtime.INTERPRETING:
        assert runtime.use_triton(torch.zeros(1))


@pytest.fixture
def compiled() -> None:
    """The test needs Triton's compiler mode (skipped in a process that interprets)."""
    if runtime.INTERPRETING:
        pytest.skip("this process runs Triton's interpreter (TRITON_INTERPRET was set)")


def _needs_child(item: pytest.Item) -> bool:
    return (
        runtime.HAS_TRITON
        and not runtime.INTERPRETING
        and "interpret" in getattr(item, "fixturenames", ())
    )


def _run_child(session: pytest.Session) -> dict[str, dict]:
    """Run every collected interpreter test in one child pytest with ``TRITON_INTERPRET=1``."""
    ids = [item.nodeid for item in session.items if _needs_child(item)]
    with tempfile.TemporaryDirectory(prefix="rdcl-interpret-") as tmp:
        results = Path(tmp) / "results.jsonl"
        env = dict(os.environ, TRITON_INTERPRET="1", **{RESULTS_ENV: str(results)})
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids]
        proc = subprocess.run(
            cmd, cwd=session.config.rootpath, env=env, capture_output=True, text=True
        )
        out: dict[str, dict] = {"": {"output": (proc.stdout + proc.stderr)[-6000:]}}
        if results.is_file():
            for line in results.read_text().splitlines():
                report = json.loads(line)
                entry = out.setdefault(report["nodeid"], {"outcome": "passed", "longrepr": ""})
                if report["outcome"] != "passed" and entry["outcome"] != "failed":
                    entry.update(outcome=report["outcome"], longrepr=report["longrepr"])
    return out


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """In a process that does not interpret, report an interpreter test's outcome in the child."""
    global _child_results
    if not _needs_child(pyfuncitem):
        return None
    if _child_results is None:
        _child_results = _run_child(pyfuncitem.session)
    result = _child_results.get(pyfuncitem.nodeid)
    if result is None:
        pytest.fail(
            "the interpreter child process did not run this test; its output:\n"
            + _child_results[""]["output"],
            pytrace=False,
        )
    if result["outcome"] == "skipped":
        pytest.skip(f"in the interpreter child process: {result['longrepr']}")
    if result["outcome"] == "failed":
        pytest.fail(f"in the interpreter child process:\n{result['longrepr']}", pytrace=False)
    return True


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In the child process: append each phase's report to the results file."""
    path = os.environ.get(RESULTS_ENV)
    if not path or (report.when != "call" and report.outcome == "passed"):
        return
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])  # (file, line, reason)
    else:
        text = report.longreprtext
    line = {"nodeid": report.nodeid, "outcome": report.outcome, "longrepr": text}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    scale = expected.abs().max().clamp_min(1e-6)
    return ((actual.double() - expected).abs().max() / scale).item()


@pytest.fixture
def rel_err():
    """max |actual - expected| / max(max |expected|, 1e-6) (in float64), as a function."""
    return _rel_err
