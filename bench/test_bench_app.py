"""The C++ app ``rdcl_predict`` against the Python predictor, same model, input and device.

Three ways to segment the same file, each timed end to end as a user runs it (a subprocess:
start-up, reading, prediction, writing):

- ``eager``: ``rdcl predict -m CKPT`` (the eager Python predictor on the checkpoint);
- ``torchscript_py``: ``rdcl predict -m MODEL.ts`` (the exported file run from Python);
- ``cpp``: ``rdcl_predict MODEL.ts`` (the exported file run from the C++ app).

The model is the ``tiny3d`` preset with seeded random weights (timing does not depend on the
weights) exported with ``rdcl export``; the training spacing is coarse (5 x 3 x 3 mm) so that a
run takes seconds on 2 CPU cores. Inputs: a synthetic 64x256x256 CT and the real chest CT
(512x512x141, skipped where ../shared/data is absent). The cpp rows carry the ratio to the eager
and TorchScript-from-Python rows of the same run in ``extra_info`` (target: cpp/eager <= 1.1).

Run: ``pytest bench/test_bench_app.py --benchmark-only --benchmark-columns=min,median,rounds``
(builds the app with CMake; ``RDCL_APP_BUILD_DIR`` reuses a build folder).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHEST_CT = ROOT.parent / "shared" / "data" / "chest_ct" / "chest_ct.nii.gz"
IMPLS = ("eager", "torchscript_py", "cpp")
TIMES: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build rdcl_predict (Release) against the installed torch; return its path."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = Path(os.environ.get("RDCL_APP_BUILD_DIR") or tmp_path_factory.mktemp("app"))
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(build), "-DRDCL_BUILD_PYTHON=OFF", "-DRDCL_CUDA=OFF",
        "-DRDCL_BUILD_PREDICTOR=ON", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]  # fmt: skip
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "rdcl_predict"], check=True)
    return build / "rdcl_predict"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(checkpoint, exported .ts)`` of the tiny3d preset with seeded random weights."""
    from rdcl.config import preset
    from rdcl.data.preprocessing.intensity import IntensityStats
    from rdcl.formats.checkpoint import FORMAT, save_checkpoint
    from rdcl.model import build_network

    folder = tmp_path_factory.mktemp("model")
    cfg = preset("tiny3d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=(5.0, 3.0, 3.0)))
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    stats = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)
    ckpt = save_checkpoint(
        folder / "m.ckpt",
        {
            "format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
            "step": 0, "model": net.state_dict(), "optimizer": None, "rng": None,
            "intensity": stats.to_dict(), "dataset": {"name": "bench", "dim": 3},
        },
    )  # fmt: skip
    ts = folder / "m.ts"
    subprocess.run(
        [sys.executable, "-m", "rdcl", "export", "-m", str(ckpt), "--out", str(ts)], check=True
    )
    return Path(ckpt), ts


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The benchmark inputs by name."""
    import SimpleITK as sitk

    from rdcl.data.synth import synthesize_phantom

    ph = synthesize_phantom("covid", (64, 256, 256), (2.5, 1.4, 1.4), np.random.default_rng(0))
    img = sitk.GetImageFromArray(ph.image)
    img.SetSpacing((1.4, 1.4, 2.5))
    path = tmp_path_factory.mktemp("inputs") / "synthetic.nii.gz"
    sitk.WriteImage(img, str(path))
    return {"synthetic_64x256x256": path, "chest_ct_141x512x512": CHEST_CT}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["synthetic_64x256x256", "chest_ct_141x512x512"])
def test_app_vs_python(benchmark, app, models, inputs, tmp_path, case: str, impl: str) -> None:
    src = inputs[case]
    if not src.is_file():
        pytest.skip(f"input absent: {src}")
    ckpt, ts = models
    out = tmp_path / "mask.nii.gz"
    if impl == "cpp":
        cmd = [str(app), str(ts), str(src), str(out), "--overwrite"]
    else:
        model = ckpt if impl == "eager" else ts
        cmd = [sys.executable, "-m", "rdcl", "predict", "-q", "--device", "cpu", "-m", str(model)]
        cmd += ["-i", str(src), "-o", str(out), "--overwrite"]

    def run() -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    TIMES[(case, impl)] = benchmark.stats.stats.min
    benchmark.extra_info.update(case=case, impl=impl, threads=torch.get_num_threads())
    if impl == "cpp":
        for ref in ("eager", "torchscript_py"):
            if (case, ref) in TIMES:
                benchmark.extra_info[f"ratio_vs_{ref}"] = round(
                    TIMES[(case, "cpp")] / TIMES[(case, ref)], 3
                )
