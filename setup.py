"""Build script for rdcl.

The Python package is plain setuptools. The compiled parts (the surface-metric engine, and its CUDA
library when nvcc is found) are built by CMake from ``CMakeLists.txt``; this file drives CMake
during ``pip install`` and copies the resulting Python extension modules into ``rdcl/``.

Build against the torch and pybind11 already installed: ``pip install --no-build-isolation .``.
Environment knobs (all optional):
  RDCL_CUDA=0|1       force the CUDA library off/on (default: on when nvcc is found)
  RDCL_CUDA_ARCHS     CMake CUDA architectures (default "80;90")
  RDCL_BUILD_JOBS     parallel build jobs (default: number of CPUs)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def read_version() -> str:
    """The version written in ``rdcl/_version.py`` (its one home; CMake reads the same line)."""
    text = (ROOT / "rdcl" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "(\d+\.\d+\.\d+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError('expected __version__ = "MAJOR.MINOR.PATCH" in rdcl/_version.py')
    return match.group(1)


class CMakeExtension(Extension):
    """A placeholder extension whose real build is done by CMake."""

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build ``CMakeLists.txt`` and copy the Python modules it produces."""

    def build_extension(self, ext: Extension) -> None:
        ext_path = Path(self.get_ext_fullpath(ext.name)).resolve()
        out_dir = ext_path.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        import pybind11

        args = [
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DRDCL_PYTHON_OUTPUT_DIR={out_dir}",
            "-DRDCL_BUILD_PYTHON=ON",
            "-DRDCL_BUILD_PREDICTOR=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        cuda = os.environ.get("RDCL_CUDA")
        if cuda is not None:
            args.append(f"-DRDCL_CUDA={'ON' if cuda == '1' else 'OFF'}")
        if os.environ.get("RDCL_CUDA_ARCHS"):
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['RDCL_CUDA_ARCHS']}")
        if shutil.which("ninja"):
            args.append("-GNinja")
        jobs = os.environ.get("RDCL_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)


setup(
    name="rdcl",
    version=read_version(),
    description=(
        "Relation-driven collaborative learning for annotation-efficient COVID-19 CT lung "
        "infection segmentation (Zhang et al., arXiv:2012.15564)"
    ),
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[*find_packages(include=["rdcl", "rdcl.*"]), "rdcl.kernels"],
    package_dir={"rdcl.kernels": "kernels"},
    package_data={"rdcl": ["py.typed"]},
    ext_modules=[CMakeExtension("rdcl._surface")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "torch>=2.4,<3",
        "numpy>=1.24",
        "scipy>=1.15",  # rdcl.study.stats: wilcoxon's exact tie handling, bootstrap(rng=)
        "SimpleITK>=2.3",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "triton": ["triton>=3.8"],
        "test": [
            "pytest>=8",
            "pytest-benchmark>=4",
            "triton>=3.8",
            "numpy>=2.4",
            "surface-distance>=0.1",
            "monai>=1.3",
            "ruff>=0.6",
            "clang-format>=17",
        ],
    },
    entry_points={"console_scripts": ["rdcl=rdcl.cli:main"]},
    zip_safe=False,
)
