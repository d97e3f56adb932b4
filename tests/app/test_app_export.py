"""End to end: ``rdcl export`` of a checkpoint, then the eager Python predictor (``rdcl predict``
on the checkpoint), the exported TorchScript run from Python, and the C++ app give the same mask,
on a synthetic CT volume and on the real chest CT (512x512x141).

The checkpoint is built here from the ``tiny3d``/``tiny2d`` presets with seeded random weights
(no training): the comparison is about the predictor pipeline, not the weights.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import SHARED, AppBuild

from rdcl.config import preset
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.formats.checkpoint import FORMAT, save_checkpoint
from rdcl.model import build_network

CHEST_CT = SHARED / "chest_ct" / "chest_ct.nii.gz"
STATS = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)


def make_checkpoint(path: Path, name: str, spacing: tuple[float, ...]) -> Path:
    """A checkpoint of preset ``name`` with seeded random weights and training ``spacing``."""
    cfg = preset(name)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=spacing))
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    # a positive output bias, so the random network's mask is neither empty nor full
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d) and m.out_channels == 1:
                m.bias.add_(0.05)
    save_checkpoint(
        path,
        {
            "format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
            "step": 0, "model": net.state_dict(), "optimizer": None, "rng": None,
            "intensity": STATS.to_dict(), "dataset": {"name": "t", "dim": cfg.model.dim},
        },
    )  # fmt: skip
    return path


def rdcl(*args: object) -> subprocess.CompletedProcess:
    """Run the rdcl CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "rdcl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def three_way(
    app: AppBuild, ckpt: Path, image: Path, tmp: Path, *, check_on_image: bool = True
) -> np.ndarray:
    """Export ``ckpt``; assert Python predictor == TorchScript == C++ app on ``image``.

    ``check_on_image``: export's own check runs on ``image`` (else on its synthetic phantom).
    """
    ts = tmp / "model.ts"
    check = ["--check-input", image] if check_on_image else []
    res = rdcl("export", "-m", ckpt, "--out", ts, *check)
    assert res.returncode == 0, res.stderr[-2000:]
    eager = tmp / "eager.nii.gz"
    res = rdcl("predict", "-q", "-m", ckpt, "-i", image, "-o", eager, "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    cpp = tmp / "cpp.nii.gz"
    res = subprocess.run(
        [str(app.predict), str(ts), str(image), str(cpp)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    img = sitk.ReadImage(str(image))
    module = torch.jit.load(str(ts))
    with torch.inference_mode():
        scripted = module(
            torch.from_numpy(sitk.GetArrayFromImage(img).astype(np.float32)),
            torch.tensor(img.GetSpacing()[::-1], dtype=torch.float64),
        ).numpy()
    m_eager = sitk.GetArrayFromImage(sitk.ReadImage(str(eager)))
    m_cpp = sitk.GetArrayFromImage(sitk.ReadImage(str(cpp)))
    np.testing.assert_array_equal(m_cpp, scripted)
    np.testing.assert_array_equal(m_cpp, m_eager)
    out = sitk.ReadImage(str(cpp))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(out, get)() == getattr(img, get)(), get
    assert 0 < m_cpp.mean() < 1, "a trivial mask would make the comparison weak"
    return m_cpp


def _phantom(shape: tuple[int, ...], spacing: tuple[float, ...]) -> sitk.Image:
    from rdcl.data.synth import synthesize_phantom

    ph = synthesize_phantom("covid", shape, spacing, np.random.default_rng(0))
    img = sitk.GetImageFromArray(ph.image)
    img.SetSpacing(tuple(reversed(spacing)))
    img.SetOrigin(tuple(-3.5 * (i + 1) for i in range(len(shape))))
    return img


@pytest.mark.slow
def test_export_3d_synthetic_volume(app_build, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "tiny3d", (2.0, 1.5, 1.5))
    src = tmp_path / "ct.nii.gz"
    sitk.WriteImage(_phantom((24, 64, 64), (2.5, 1.2, 1.2)), str(src))
    three_way(app_build, ckpt, src, tmp_path)


@pytest.mark.slow
def test_export_2d_model_on_2d_nifti(app_build, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m2.ckpt", "tiny2d", (1.0, 1.0))
    src = tmp_path / "slice.nii.gz"
    sitk.WriteImage(_phantom((96, 96), (0.8, 0.8)), str(src))
    mask = three_way(app_build, ckpt, src, tmp_path)
    assert mask.ndim == 2


@pytest.mark.slow
@pytest.mark.realdata
def test_export_chest_ct(app_build, tmp_path):
    if not CHEST_CT.is_file():
        pytest.skip(f"real data absent: {CHEST_CT}")
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "tiny3d", (5.0, 3.0, 3.0))
    mask = three_way(app_build, ckpt, CHEST_CT, tmp_path, check_on_image=False)
    assert mask.shape == (141, 512, 512)
