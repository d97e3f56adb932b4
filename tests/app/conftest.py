"""Build the C++ predictor app (csrc/app) once per test session.

The build goes to a temporary folder, or to ``$RDCL_APP_BUILD_DIR`` where set. CI configures and
builds there first (with the CUDA engine in the same tree, so the app is known to build beside
it); a folder that is configured already keeps its configuration and the tests only re-run an
incremental build. Skipped, with the reason, only where cmake or a C++ compiler is missing; a
failing build fails the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class AppBuild:
    """Paths of the built executables."""

    predict: Path
    replay: Path


def _compiler() -> str | None:
    for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


@pytest.fixture(scope="session")
def app_build(tmp_path_factory: pytest.TempPathFactory) -> AppBuild:
    """Configure and build rdcl_predict and rdcl_nifti_replay; return their paths."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed: the C++ app cannot be built")
    if _compiler() is None:
        pytest.skip("no C++ compiler (c++, g++ or clang++) found: the C++ app cannot be built")
    import torch

    build = Path(os.environ.get("RDCL_APP_BUILD_DIR") or tmp_path_factory.mktemp("app_build"))
    args = [
        cmake,
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-DRDCL_BUILD_PYTHON=OFF",
        "-DRDCL_BUILD_PREDICTOR=ON",
        "-DRDCL_BUILD_NIFTI_REPLAY=ON",
        "-DRDCL_CUDA=OFF",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]
    if shutil.which("ninja"):
        args.append("-GNinja")
    configured = os.environ.get("RDCL_APP_BUILD_DIR") and (build / "CMakeCache.txt").is_file()
    steps = [] if configured else [args]
    for cmd in (*steps, [cmake, "--build", str(build), "-j", str(os.cpu_count() or 1)]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(
                f"building the C++ app failed ({' '.join(cmd)}):\n{res.stdout[-3000:]}"
                f"\n{res.stderr[-3000:]}"
            )
    return AppBuild(predict=build / "rdcl_predict", replay=build / "rdcl_nifti_replay")
