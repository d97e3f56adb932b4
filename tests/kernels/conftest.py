"""Fixtures for the relation-kernel tests: the Triton CPU interpreter, switched on per test."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import ops


@pytest.fixture
def interpret(monkeypatch: pytest.MonkeyPatch):
    """Run the Triton path on CPU (TRITON_INTERPRET=1, read by the ops at call time).

    Yields :class:`rdcl.kernels.runtime.KernelModules` decorated for the interpreter.
    """
    if not ops.HAS_TRITON:
        pytest.skip("triton is not installed (pip install 'triton>=3.8')")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    modules = ops.kernel_modules()
    assert ops.use_triton(torch.zeros(1))
    yield modules


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    scale = expected.abs().max().clamp_min(1e-6)
    return ((actual.double() - expected).abs().max() / scale).item()


@pytest.fixture
def rel_err():
    """max |actual - expected| / max(max |expected|, 1e-6) (in float64), as a function."""
    return _rel_err
