"""Which surface engine runs: a missing or broken rdcl._surface is warned about, named by
``rdcl.metrics.engine()``, and an error under RDCL_REQUIRE_ENGINE (which CI sets)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from rdcl.metrics import CUDA_BUILT, HAVE_EXTENSION, engine, import_error

# The child blocks rdcl._surface (a None entry in sys.modules makes its import fail, as a broken or
# missing build does), then computes one metric.
_BROKEN = textwrap.dedent(
    """
    import sys, warnings
    sys.modules["rdcl._surface"] = None
    import numpy as np
    import rdcl.metrics as m
    print("engine", m.engine())
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.surface_distances(gt, gt, 1.0)
        m.surface_distances(gt, gt, 1.0)
    print("warnings", len(caught))
    print("message", caught[0].message)
    """
)


def _run(env_value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RDCL_REQUIRE_ENGINE", None)
    if env_value is not None:
        env["RDCL_REQUIRE_ENGINE"] = env_value
    return subprocess.run(
        [sys.executable, "-c", _BROKEN], capture_output=True, text=True, env=env, timeout=120
    )


def test_missing_engine_warns_once_and_names_the_fallback():
    proc = _run(None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "engine numpy-reference" in out
    assert "warnings 1" in out  # once, not per call
    assert (
        "rdcl._surface did not import (ModuleNotFoundError: import of rdcl._surface halted" in out
    )


@pytest.mark.parametrize("value", ["1", "cpp", "cuda"])
def test_required_engine_missing_is_an_error(value):
    proc = _run(value)
    assert proc.returncode != 0
    assert f"RDCL_REQUIRE_ENGINE={value} but the compiled engine rdcl._surface did not import" in (
        proc.stderr
    )


def test_bad_require_value_is_an_error():
    proc = _run("yes")
    assert proc.returncode != 0
    assert "expected RDCL_REQUIRE_ENGINE to be 0, 1, cpp or cuda, found 'yes'" in proc.stderr


def test_engine_names_what_this_process_uses():
    assert engine() == ("cpp" if HAVE_EXTENSION else "numpy-reference")
    assert (import_error() is None) == HAVE_EXTENSION
    with pytest.raises(ValueError, match="expected device"):
        engine("tpu")


def test_required_engine_is_the_one_in_use():
    """Under CI's RDCL_REQUIRE_ENGINE the compiled engine (with CUDA for "cuda") is what runs."""
    required = os.environ.get("RDCL_REQUIRE_ENGINE", "").lower()
    if required in ("", "0"):
        pytest.skip("RDCL_REQUIRE_ENGINE is not set (.ci/run sets it)")
    assert engine() == "cpp", import_error()
    if required == "cuda":
        assert CUDA_BUILT
