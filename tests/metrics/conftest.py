"""Shared helpers for the metric tests: surface-distance as the external oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def deepmind():
    """google-deepmind/surface-distance (PyPI surface_distance), with the numpy>=2 np.Inf shim."""
    sd = pytest.importorskip("surface_distance")
    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # noqa: NPY201 (surface-distance spells np.Inf, removed in numpy 2)
    return sd


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent")
    return DATA
