"""The scripted predictor pipeline vs the eager Predictor (from Python, no file round trip needed
for equality, but the saved file is reloaded where the contract is about the file). The torch
resampling inside both is tested against scipy in tests/inference/test_pipeline.py."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
import torch
from _export_helpers import SHARED, config, phantom, predictor, run_ts

from rdcl.data.io import Geometry, read_image
from rdcl.export.torchscript import build_scripted

CASES = {
    # 3D dual network, CT normalisation, resampling to a training spacing, mirroring, batch 3
    "3d_dual_resampled_mirror": (
        "tiny3d", "dual", {"target_spacing": (2.0, 1.5, 1.5)}, {"mirror": True, "tile_batch": 3},
        (20, 40, 44), (2.5, 1.3, 1.3),
    ),
    # 3D single network, window normalisation, no resampling, smaller than the patch along z
    "3d_window_padded": (
        "tiny3d", "single", {"normalization": "window", "window": (-1250.0, 250.0)}, {},
        (12, 40, 50), (2.0, 1.0, 1.0),
    ),
    # a 2D network on a volume: whole-volume zscore, in-plane resampling, slice by slice
    "2d_net_on_volume": (
        "tiny2d", "single", {"normalization": "zscore", "target_spacing": (1.2, 1.2)}, {},
        (5, 70, 66), (3.0, 0.9, 0.9),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_scripted_predictor_gives_the_eager_mask(case, tmp_path):
    preset_name, kind, data, options, shape, spacing = CASES[case]
    cfg = config(preset_name, **data)
    eager = predictor(cfg, kind, **options)
    image, _, geom = phantom(shape, spacing, seed=1)
    geom = Geometry(spacing, geom.origin, geom.direction) if len(spacing) == 3 else geom
    path = tmp_path / "m.ts"
    torch.jit.save(build_scripted(eager), str(path))
    module = torch.jit.load(str(path))
    want_p = eager.predict_probabilities(image, geom)
    got_p = run_ts(module, image, spacing, "probabilities")
    np.testing.assert_allclose(got_p, want_p, rtol=0, atol=1e-5)
    want = eager.predict_array(image, geom)
    got = run_ts(module, image, spacing)
    assert got.dtype == np.uint8 and got.shape == image.shape
    assert 0 < want.sum() < want.size  # a mask with both classes, so equality means something
    np.testing.assert_array_equal(got, want)


def test_window_override_matches_eager_and_the_hu_input():
    # A radiopaedia-style input (HU window -1250..250 scaled to 0..255) predicted with the window
    # (0, 255) gives the mask of the HU input; without the override it does not.
    cfg = config("tiny3d", normalization="window", window=(-1250.0, 250.0))
    eager = predictor(cfg)
    image, _, geom = phantom((16, 48, 48), (2.0, 1.0, 1.0), seed=2)
    scaled = (np.clip(image, -1250, 250) + 1250.0) / 1500.0 * 255.0
    module = build_scripted(eager)
    x = torch.from_numpy(scaled.astype(np.float32))
    sp = torch.tensor(geom.spacing, dtype=torch.float64)
    w = torch.tensor([0.0, 255.0], dtype=torch.float64)
    got = module.forward_window(x, sp, w).numpy()
    np.testing.assert_array_equal(got, eager.predict_array(scaled, geom, window=(0.0, 255.0)))
    hu_mask = eager.predict_array(image, geom)
    assert (got != hu_mask).mean() < 1e-3
    assert (run_ts(module, scaled, geom.spacing) != hu_mask).mean() > 0.05


def test_bad_inputs_raise_one_clear_message():
    cfg = config("tiny3d")
    module = build_scripted(predictor(cfg))
    x = torch.zeros((8, 32, 32))
    cases = [
        (x[0], torch.ones(2, dtype=torch.float64), "expected an image (Z, Y, X)"),
        (x, torch.ones(2, dtype=torch.float64), "expected a spacing of 3 entries"),
        (
            x,
            torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64),
            "expected finite positive spacings",
        ),
        (x * float("nan"), torch.ones(3, dtype=torch.float64), "expected finite intensities"),
        (
            torch.zeros((0, 32, 32)),
            torch.ones(3, dtype=torch.float64),
            "expected a non-empty image",
        ),
    ]
    for image, spacing, message in cases:
        with pytest.raises(torch.jit.Error, match=re.escape("rdcl: " + message)):
            module(image, spacing)
    with pytest.raises(torch.jit.Error, match="window low < high"):
        module.forward_window(x, torch.ones(3, dtype=torch.float64), torch.tensor([5.0, 5.0]))


def test_saved_file_has_readable_extra_files(tmp_path):
    from rdcl.export import export_predictor

    cfg = config("tiny3d", target_spacing=(2.0, 1.5, 1.5), normalization="ct")
    out = tmp_path / "model.ts"
    result = export_predictor(predictor(cfg), out, kind="single", config=cfg.to_dict())
    assert result.check.passed and result.check.equal
    with zipfile.ZipFile(out) as z:  # readable without rdcl or torch
        names = {n.split("/", 1)[1]: n for n in z.namelist()}
        meta = json.loads(z.read(names["extra/rdcl.json"]))
        stored = json.loads(z.read(names["extra/config.json"]))
    assert stored == json.loads(json.dumps(cfg.to_dict()))
    assert meta["format"] == "rdcl-export/1" and meta["dim"] == 3
    assert meta["target_spacing"] == [2.0, 1.5, 1.5]
    assert meta["torch_version"] == torch.__version__
    assert meta["normalization"] == "ct" and meta["intensity"]["lo"] == -1000.0
    assert "HU" in meta["intensity_convention"]
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed, nothing left over


CHEST_CT = SHARED / "chest_ct" / "chest_ct.nii.gz"


@pytest.mark.realdata
@pytest.mark.slow
def test_real_chest_ct_same_mask_and_geometry(tmp_path):
    if not CHEST_CT.is_file():
        pytest.skip(f"real data not available: {CHEST_CT} (../shared/data is absent)")
    from _export_helpers import save_ckpt

    from rdcl.cli import main
    from rdcl.export import export_model
    from rdcl.inference import Predictor

    # A tiny network at a coarse training spacing keeps the CPU cost small; the full 141x512x512
    # volume is still normalised, spline-resampled, tiled and restored on both sides.
    cfg = config("tiny3d", patch_size=(32, 64, 64), target_spacing=(4.0, 4.0, 4.0))
    ckpt = save_ckpt(tmp_path / "m.ckpt", cfg)
    image, geom = read_image(CHEST_CT)
    want = Predictor.from_checkpoint(ckpt, device="cpu").predict_array(image, geom)
    assert 0 < want.sum() < want.size
    model = export_model(ckpt, tmp_path / "m.ts").path
    out = tmp_path / "mask.nii.gz"
    argv = ["predict", "-q", "-m", str(model), "-i", str(CHEST_CT), "-o", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    mask, mask_geom = read_image(out)
    assert mask.shape == image.shape
    assert mask_geom.spacing == geom.spacing and mask_geom.origin == geom.origin
    assert mask_geom.direction == geom.direction
    np.testing.assert_array_equal(mask, want)
