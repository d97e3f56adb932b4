"""A CUDA build of the engine on a machine without a GPU (what CI runs: .ci/run builds rdcl with
the CUDA engine from pip's CUDA toolkit and tests it here).

The CUDA build must import, say that CUDA is built but cannot run, refuse CUDA requests with one
line, and compute on the CPU exactly what a CPU-only build computes: same sources, same flags, no
code path of the CPU engine may depend on whether CUDA was compiled in. The CPU-only module is
built here by CMake (or taken from ``$RDCL_CPU_ONLY_ENGINE_DIR`` where set) and run in a child
process: two pybind11 modules registering the same C++ types cannot share one interpreter.
Skipped, with the reason, where the installed engine has no CUDA part (a CPU-only build is what
the rest of the suite tests) or a GPU is present (tests/metrics/test_inputs.py's GPU tests apply).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcl.metrics import CUDA_BUILT, _engine, engine, surface_distances

ROOT = Path(__file__).resolve().parents[2]

needs_cuda_build = pytest.mark.skipif(
    not CUDA_BUILT, reason="rdcl._surface was built without CUDA (tools/cuda_toolkit.sh builds one)"
)
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


@needs_cuda_build
@no_gpu
def test_cuda_build_without_gpu_reports_and_refuses():
    assert engine() == "cpp" and engine("cuda") == "unavailable"
    gt = np.zeros((6, 8, 8), bool)
    gt[1:5, 2:6, 2:6] = True
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ImportError) as info:
            surface_distances(gt, gt, 1.0, device=device)
        message = str(info.value)
        assert "\n" not in message
        if torch.backends.cuda.is_built():
            assert message == "device='cuda' needs a visible CUDA GPU, found none"
        else:
            assert message == (
                f"device='cuda' needs a torch built with CUDA, found torch {torch.__version__} "
                "(CPU only)"
            )


@needs_cuda_build
@no_gpu
def test_cli_cuda_request_is_one_line(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    mask = np.zeros((4, 8, 8), np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    (tmp_path / "m").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / "m" / "c1.nii.gz"))
    proc = subprocess.run(
        [sys.executable, "-m", "rdcl", "evaluate", "--pred", str(tmp_path / "m"), "--gt",
         str(tmp_path / "m"), "--device", "cuda"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcl evaluate: error: "), proc.stderr
    assert "cuda" in lines[0].lower()


# ------------------------------------------------------------------ CPU engine == CPU-only build


def _cases() -> list[tuple[np.ndarray, np.ndarray, list[float], str, int]]:
    """(pred, gt, spacing, boundary, threads): random masks in 2D and 3D, both boundaries, 1 and 2
    threads, isotropic, anisotropic and extreme spacings, and a larger pair of blobs."""
    rng = np.random.default_rng(18)
    cases = []
    for i in range(24):
        dim = 2 + i % 2
        shape = tuple(int(s) for s in rng.integers(3, 24, dim))
        gt = rng.random(shape) < rng.uniform(0.05, 0.5)
        pred = rng.random(shape) < rng.uniform(0.05, 0.5)
        spacing = [float(s) for s in rng.uniform(0.2, 3.0, dim)]
        if i % 6 == 4:
            spacing = [0.3] * dim
        if i % 6 == 5:
            spacing = [1e-6, *([2.5] * (dim - 1))]
        cases.append((pred, gt, spacing, ("corner", "voxel")[i // 2 % 2], 1 + i // 4 % 2))
    z, y, x = np.ogrid[:40, :64, :64]
    gt = ((z - 20) / 12.0) ** 2 + ((y - 30) / 20.0) ** 2 + ((x - 30) / 18.0) ** 2 <= 1
    pred = ((z - 21) / 11.0) ** 2 + ((y - 33) / 19.0) ** 2 + ((x - 28) / 20.0) ** 2 <= 1
    for threads in (1, 2):
        cases.append((pred, gt, [2.5, 0.8, 0.8], "corner", threads))
    return cases


TABLE_SPACINGS = [[1.0, 1.0, 1.0], [2.5, 0.8, 0.8], [0.37, 1.9, 3.1], [1e-6, 10.0, 0.7]]

_CHILD = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np

    path, data, out = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("_surface", path)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    cases = np.load(data)
    result = {"cuda_built": np.array(ext.cuda_built())}
    for i in range(int(cases["n"])):
        arrays = ext.surface_distances_cpu(
            cases[f"pred{i}"], cases[f"gt{i}"], cases[f"spacing{i}"].tolist(),
            str(cases[f"boundary{i}"]), int(cases[f"threads{i}"]),
        )
        for k, a in enumerate(arrays):
            result[f"case{i}_{k}"] = a
    for j, s in enumerate(cases["table_spacings"].tolist()):
        result[f"area{j}"] = np.asarray(ext.corner_area_table_3d(s))
        result[f"length{j}"] = np.asarray(ext.corner_length_table_2d(s[:2]))
    np.savez(out, **result)
    """
)


def _cmake_build_cpu_only(build: Path) -> None:
    import pybind11

    args = [
        "cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
        "-DRDCL_CUDA=OFF", "-DRDCL_BUILD_PYTHON=ON", "-DRDCL_BUILD_PREDICTOR=OFF",
        f"-DRDCL_PYTHON_OUTPUT_DIR={build / 'python'}", f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        *(["-GNinja"] if shutil.which("ninja") else []),
    ]  # fmt: skip
    for cmd in (args, ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def cpu_only_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a CPU-only rdcl._surface built from this checkout (RDCL_CUDA=OFF)."""
    given = os.environ.get("RDCL_CPU_ONLY_ENGINE_DIR")
    if given:
        build = Path(given)
    else:
        if shutil.which("cmake") is None:
            pytest.skip("cmake is not installed: the CPU-only module cannot be built")
        build = tmp_path_factory.mktemp("cpu_only")
    _cmake_build_cpu_only(build)  # incremental where CI built it already
    found = sorted((build / "python").glob("_surface*.so"))
    assert len(found) == 1, found
    return found[0]


@needs_cuda_build
@pytest.mark.slow
def test_cpu_engine_equals_cpu_only_build(cpu_only_module: Path, tmp_path: Path):
    cases = _cases()
    data: dict[str, np.ndarray] = {"n": np.array(len(cases))}
    for i, (pred, gt, spacing, boundary, threads) in enumerate(cases):
        data |= {f"pred{i}": pred.view(np.uint8), f"gt{i}": gt.view(np.uint8)}
        data |= {f"spacing{i}": np.array(spacing), f"boundary{i}": np.array(boundary)}
        data[f"threads{i}"] = np.array(threads)
    data["table_spacings"] = np.array(TABLE_SPACINGS)
    np.savez(tmp_path / "cases.npz", **data)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cpu_only_module), str(tmp_path / "cases.npz"),
         str(tmp_path / "cpu_only.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = np.load(tmp_path / "cpu_only.npz")
    assert not other["cuda_built"] and CUDA_BUILT
    ext = _engine.extension()
    total = 0
    for i, (pred, gt, spacing, boundary, threads) in enumerate(cases):
        ours = ext.surface_distances_cpu(
            pred.view(np.uint8), gt.view(np.uint8), spacing, boundary, threads
        )
        for k, a in enumerate(ours):
            b = other[f"case{i}_{k}"]
            assert a.dtype == b.dtype == np.float64
            # Exact: the same CPU code must give the same bits, not merely close values.
            np.testing.assert_array_equal(a, b, err_msg=f"case {i}, array {k}")
            total += a.size
    assert total > 10_000  # the cases exercised the engine
    for j, s in enumerate(TABLE_SPACINGS):
        np.testing.assert_array_equal(ext.corner_area_table_3d(s), other[f"area{j}"])
        np.testing.assert_array_equal(ext.corner_length_table_2d(s[:2]), other[f"length{j}"])
