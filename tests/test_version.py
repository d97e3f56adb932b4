"""One version number: the package, its installed metadata and the CMake project agree.

``rdcl/_version.py`` is the one place the version is written; ``setup.py`` and
``cmake/rdclVersion.cmake`` (used by ``CMakeLists.txt`` for ``project(VERSION)`` and hence the
installed ``rdclConfigVersion.cmake``) read it.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import rdcl
from rdcl import _version

ROOT = Path(__file__).resolve().parents[1]


def test_package_and_metadata_versions_agree() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", rdcl.__version__)
    assert rdcl.__version__ == _version.__version__
    assert importlib.metadata.version("rdcl") == rdcl.__version__


def test_cmake_reads_the_same_version(tmp_path: Path) -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    script = tmp_path / "print_version.cmake"
    script.write_text(
        f'include("{(ROOT / "cmake" / "rdclVersion.cmake").as_posix()}")\n'
        'message(STATUS "RDCL_VERSION=${RDCL_VERSION}")\n'
    )
    proc = subprocess.run(["cmake", "-P", str(script)], capture_output=True, text=True, check=True)
    assert f"RDCL_VERSION={rdcl.__version__}" in proc.stdout + proc.stderr
    # ... and the project takes its version from there (so rdclConfigVersion.cmake does too).
    cmakelists = (ROOT / "CMakeLists.txt").read_text()
    assert "project(rdcl VERSION ${RDCL_VERSION}" in cmakelists


def test_version_is_written_once() -> None:
    """No other file of the package or build spells the version literally."""
    pattern = re.compile(r"""version\s*=\s*["']\d+\.\d+\.\d+["']""", re.IGNORECASE)
    for path in [ROOT / "setup.py", ROOT / "pyproject.toml", ROOT / "rdcl" / "__init__.py"]:
        assert not pattern.search(path.read_text()), f"{path.name} spells a version literally"
