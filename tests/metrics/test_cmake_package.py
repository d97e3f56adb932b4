"""The installed CMake package: ``find_package(rdcl)`` + ``rdcl::surface`` from a C++ project.

Configures, builds and installs the engine's C++ core (no Python module, no predictor app) into a
temporary prefix, then builds a tiny consumer project written here that links ``rdcl::surface``,
runs it on a small mask pair and compares its DSC and NSD with the Python engine's. Twice: a
CPU-only package, and a package with the CUDA engine, whose consumer also finds the CUDA toolkit
through the package (``find_dependency(CUDAToolkit)``; ``$CUDAToolkit_ROOT`` names a toolkit, as
tools/cuda_toolkit.sh's). The CUDA package is ``$RDCL_CUDA_PACKAGE_PREFIX`` where set (CI installs
its CUDA build there), else built here when a CUDA compiler is found (``$CUDACXX`` or nvcc).
Skipped, with the reason, only where cmake, a C++ compiler or (for the CUDA package) nvcc is
missing; a failing configure, build or install fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import rdcl
from rdcl.metrics import dice, surface_dice

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPACING = (2.5, 0.8, 0.8)
TOLERANCE_MM = 1.0

CONSUMER_CMAKE = """\
cmake_minimum_required(VERSION 3.24)
project(consumer LANGUAGES CXX)
find_package(rdcl {version} EXACT REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE rdcl::surface)
target_compile_features(consumer PRIVATE cxx_std_17)
target_compile_definitions(consumer PRIVATE RDCL_PACKAGE_VERSION="${{rdcl_VERSION}}")
"""

CONSUMER_MAIN = r"""
// Reads two uint8 masks (z, y, x) and prints DSC and NSD at a tolerance, via rdcl::surface.
#include <rdcl/surface.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

static std::vector<uint8_t> read_bytes(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int main(int argc, char** argv) {
  if (argc != 10) {
    std::fprintf(stderr, "usage: consumer pred gt nz ny nx s0 s1 s2 tolerance_mm\n");
    return 2;
  }
  const std::vector<uint8_t> pred = read_bytes(argv[1]), gt = read_bytes(argv[2]);
  rdcl::surface::Problem problem;
  problem.dim = 3;
  for (int a = 0; a < 3; ++a) {
    problem.shape[a] = std::atoll(argv[3 + a]);
    problem.spacing[a] = std::atof(argv[6 + a]);
  }
  const double tolerance = std::atof(argv[9]);
  const size_t n = static_cast<size_t>(problem.shape[0] * problem.shape[1] * problem.shape[2]);
  if (pred.size() != n || gt.size() != n) {
    std::fprintf(stderr, "expected %zu bytes per mask, found %zu and %zu\n", n, pred.size(),
                 gt.size());
    return 2;
  }
  size_t both = 0, total = 0;
  for (size_t i = 0; i < n; ++i) {
    both += (pred[i] != 0) && (gt[i] != 0);
    total += (pred[i] != 0) + (gt[i] != 0);
  }
  const rdcl::surface::Result r =
      rdcl::surface::surface_distances_cpu(pred.data(), gt.data(), problem, 1);
  double within = 0, area = 0;
  for (const auto* d : {&r.gt_to_pred, &r.pred_to_gt}) {
    for (size_t i = 0; i < d->distances.size(); ++i) {
      area += d->areas[i];
      if (d->distances[i] <= tolerance) within += d->areas[i];
    }
  }
  std::printf("version %s\n", RDCL_PACKAGE_VERSION);
  std::printf("cuda_built %d\n", rdcl::surface::cuda_built() ? 1 : 0);
  std::printf("dsc %.17g\n", 2.0 * static_cast<double>(both) / static_cast<double>(total));
  std::printf("nsd %.17g\n", within / area);
  return 0;
}
"""


def _compiler() -> str | None:
    for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _generator() -> list[str]:
    return ["-GNinja"] if shutil.which("ninja") else []


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run ``cmd``; on failure fail the test with its output (a broken build is not a skip)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _install_package(work: Path, *cuda_args: str) -> Path:
    """Configure, build and install the engine's package under ``work``; return the prefix."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if _compiler() is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX) found")
    build, out = work / "build", work / "prefix"
    _run(
        [
            "cmake", "-S", str(ROOT), "-B", str(build), *_generator(),
            "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={out}",
            "-DRDCL_BUILD_PYTHON=OFF", "-DRDCL_BUILD_PREDICTOR=OFF", *cuda_args,
        ]
    )  # fmt: skip
    _run(["cmake", "--build", str(build), "-j", "2"])
    _run(["cmake", "--install", str(build)])
    return out


@pytest.fixture(scope="module")
def cpu_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An install prefix holding the engine's CMake package (built here, CPU only)."""
    return _install_package(tmp_path_factory.mktemp("cmake_package"), "-DRDCL_CUDA=OFF")


@pytest.fixture(scope="module")
def cuda_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An install prefix holding the package of a CUDA build (CI's, or built here for sm_80)."""
    given = os.environ.get("RDCL_CUDA_PACKAGE_PREFIX")
    if given:
        return Path(given)
    if not (os.environ.get("CUDACXX") or shutil.which("nvcc")):
        pytest.skip("no CUDA compiler ($CUDACXX or nvcc; tools/cuda_toolkit.sh installs one)")
    return _install_package(
        tmp_path_factory.mktemp("cmake_package_cuda"),
        "-DRDCL_CUDA=ON",
        "-DCMAKE_CUDA_ARCHITECTURES=80",
    )


@pytest.fixture(params=["cpu", "cuda"])
def prefix(request: pytest.FixtureRequest) -> Path:
    """Each package in turn: CPU only, then with the CUDA engine."""
    return request.getfixturevalue(f"{request.param}_prefix")


def _mask_pair() -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) bool (12, 20, 24): an ellipsoid and a shifted, resized copy plus a blob."""
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in (12, 20, 24)), indexing="ij")
    gt = ((zz - 5.5) / 4) ** 2 + ((yy - 9) / 7) ** 2 + ((xx - 11) / 8) ** 2 <= 1
    pred = ((zz - 6) / 4.5) ** 2 + ((yy - 10) / 6) ** 2 + ((xx - 12) / 8.5) ** 2 <= 1
    pred[1:3, 15:18, 18:21] = True
    return pred, gt


def test_installed_package_layout(prefix: Path) -> None:
    """Only the public header is installed, next to the library and the package files."""
    assert sorted(p.name for p in (prefix / "include" / "rdcl").iterdir()) == ["surface.h"]
    cmake_dirs = list(prefix.glob("lib*/cmake/rdcl"))
    assert len(cmake_dirs) == 1, cmake_dirs
    names = {p.name for p in cmake_dirs[0].iterdir()}
    assert {"rdclConfig.cmake", "rdclConfigVersion.cmake", "rdclTargets.cmake"} <= names
    assert list(prefix.glob("lib*/librdcl_surface.a"))


def test_consumer_matches_python_engine(
    prefix: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A find_package(rdcl) consumer prints the Python engine's DSC and NSD for the same masks."""
    src, build = tmp_path / "consumer", tmp_path / "build"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE.format(version=rdcl.__version__))
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    _run(
        [
            "cmake", "-S", str(src), "-B", str(build), *_generator(),
            "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={prefix}",
        ]
    )  # fmt: skip
    _run(["cmake", "--build", str(build)])
    pred, gt = _mask_pair()
    pred.astype(np.uint8).tofile(tmp_path / "pred.raw")
    gt.astype(np.uint8).tofile(tmp_path / "gt.raw")
    exe = build / "consumer"
    args = [str(tmp_path / "pred.raw"), str(tmp_path / "gt.raw"), *map(str, pred.shape)]
    out = _run([str(exe), *args, *map(str, SPACING), str(TOLERANCE_MM)])
    values = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert values["version"] == rdcl.__version__
    kind = request.node.callspec.params["prefix"]
    assert values["cuda_built"] == {"cpu": "0", "cuda": "1"}[kind]
    expected_nsd = surface_dice(pred, gt, SPACING, TOLERANCE_MM)
    assert 0.3 < expected_nsd < 0.99  # a pair where the tolerance matters
    assert float(values["dsc"]) == pytest.approx(dice(pred, gt), rel=0, abs=1e-15)
    # Same areas and distances; only the summation order differs (numpy sums pairwise).
    assert float(values["nsd"]) == pytest.approx(expected_nsd, rel=1e-12, abs=0)


@pytest.mark.parametrize("minor_step", [1, -1])
def test_package_refuses_another_minor_version(
    cpu_prefix: Path, tmp_path: Path, minor_step
) -> None:
    """rdclConfigVersion.cmake: only the same MAJOR.MINOR is compatible (0.x may change the API),
    so neither a newer nor an older minor version is accepted."""
    major, minor, _ = (int(p) for p in rdcl.__version__.split("."))
    if minor + minor_step < 0:
        pytest.skip(f"no minor version before {rdcl.__version__}")
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\nproject(consumer LANGUAGES CXX)\n"
        f"find_package(rdcl {major}.{minor + minor_step} REQUIRED)\n"
    )
    cmd = [
        "cmake", "-S", str(src), "-B", str(tmp_path / "build"), f"-DCMAKE_PREFIX_PATH={cpu_prefix}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert rdcl.__version__ in proc.stderr  # "the following configuration files were considered"
