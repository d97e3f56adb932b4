from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from rdcl.config import preset
from rdcl.data.io import Geometry, read_image, write_image
from rdcl.data.preprocessing.preprocess import IntensityStats
from rdcl.formats.checkpoint import FORMAT, CheckpointError, save_checkpoint
from rdcl.inference.predictor import Predictor, output_name
from rdcl.model import build_network

STATS = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)
GEOM = Geometry(
    spacing=(2.5, 0.8, 0.7),
    origin=(-12.0, 30.5, 4.25),
    direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
)


def _save(path, cfg, kind="single", normalization=None, window=None):
    torch.manual_seed(0)
    net = build_network(cfg.model, kind=kind)
    payload = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "kind": kind,
        "stage": "train",
        "step": 0,
        "model": net.state_dict(),
        "optimizer": None,
        "rng": None,
        "intensity": STATS.to_dict(),
        "dataset": {"name": "test", "dim": cfg.model.dim},
    }
    if normalization:
        payload["dataset"]["normalization"] = normalization
    if window:
        payload["dataset"]["window"] = list(window)
    save_checkpoint(path, payload)
    return net


def _ct(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 300, size=shape).astype(np.int16)


class Threshold(nn.Module):
    """Logits = normalised intensity - 0.5: with a (0, 100) window the mask is ``v > 50``."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return [x - 0.5 + self.dummy]


def _window_cfg(name, target_spacing=None):
    cfg = preset(name)
    data = dataclasses.replace(
        cfg.data, normalization="window", window=(0.0, 100.0), target_spacing=target_spacing
    )
    return cfg.replace(data=data)


def test_checkpoint_equals_direct_network_on_one_tile(tmp_path):
    # Image exactly the patch size, no resampling: one tile, the Gaussian weights cancel, so the
    # predictor's probabilities are sigmoid(net(normalised image)) exactly.
    cfg = preset("tiny3d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, normalization="ct"))
    net = _save(tmp_path / "m.ckpt", cfg)
    pred = Predictor.from_checkpoint(tmp_path / "m.ckpt", device="cpu")
    image = _ct(cfg.data.patch_size)
    prob = pred.predict_probabilities(image, GEOM)
    x = (np.clip(image, STATS.lo, STATS.hi) - STATS.mean) / STATS.std
    with torch.no_grad():
        ref = torch.sigmoid(net.eval()(torch.from_numpy(x[None, None].astype(np.float32)))[0])
    np.testing.assert_allclose(prob, ref[0, 0].numpy(), rtol=1e-4, atol=1e-5)
    mask = pred.predict_array(image, GEOM)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (ref[0, 0].numpy() > 0.5).astype(np.uint8))


def test_checkpoint_dataset_normalization_overrides_config(tmp_path):
    # Trained on already-windowed data: the checkpoint records "window" and the data's window
    # (-1000, 200) while the config says "ct" and (-1250, 250); the predictor must map the
    # recorded window to [0, 1].
    cfg = preset("tiny3d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, normalization="ct"))
    net = _save(tmp_path / "m.ckpt", cfg, normalization="window", window=(-1000.0, 200.0))
    pred = Predictor.from_checkpoint(tmp_path / "m.ckpt", device="cpu")
    image = _ct(cfg.data.patch_size, seed=3)
    x = (np.clip(image, -1000, 200) + 1000.0) / 1200.0
    with torch.no_grad():
        ref = torch.sigmoid(net.eval()(torch.from_numpy(x[None, None].astype(np.float32)))[0])
    prob = pred.predict_probabilities(image, GEOM)
    np.testing.assert_allclose(prob, ref[0, 0].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["single", "dual"])
def test_predict_file_keeps_geometry_and_restores_shape(tmp_path, kind):
    # target spacing differs from the input's, so the case is resampled and restored.
    cfg = preset("tiny3d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, target_spacing=(2.0, 1.0, 1.0)))
    _save(tmp_path / "m.ckpt", cfg, kind=kind)
    image = _ct((9, 37, 30))
    write_image(image, GEOM, tmp_path / "ct.nii.gz")
    pred = Predictor.from_checkpoint(tmp_path / "m.ckpt", device="cpu")
    out = pred.predict_file(tmp_path / "ct.nii.gz", tmp_path / "out" / "mask.nii.gz")
    mask, geom = read_image(out)
    assert mask.shape == image.shape
    assert geom.matches(GEOM, atol=1e-6)
    assert set(np.unique(mask)) <= {0, 1}


def test_threshold_model_resampled_round_trip():
    # Logits = v/100 - 0.5 on a smooth ramp; resampled to a coarser grid and back, the mask is
    # still v > 50 except within one coarse voxel of the boundary.
    cfg = _window_cfg("tiny3d", target_spacing=(2.0, 1.6, 1.4))
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    x = np.broadcast_to(np.arange(36), (10, 40, 36))
    image = (x * 100.0 / 35).astype(np.float32)  # 0..100 along x
    mask = pred.predict_array(image, GEOM)
    assert mask.shape == image.shape
    expected = image > 50
    far = np.abs(image - 50) > 100.0 / 35 * 2  # more than two original voxels from the edge
    np.testing.assert_array_equal(mask[far], expected[far])


def test_2d_png_in_png_out_is_0_255(tmp_path):
    cfg = _window_cfg("tiny2d")
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    img = (np.arange(50 * 70) % 101).astype(np.uint8).reshape(50, 70)
    write_image(img, Geometry.default(2), tmp_path / "slice.png")
    pred.predict_file(tmp_path / "slice.png", tmp_path / "slice_mask.png")
    mask, _ = read_image(tmp_path / "slice_mask.png")
    np.testing.assert_array_equal(mask, np.where(img > 50, 255, 0).astype(np.uint8))
    pred.predict_file(tmp_path / "slice.png", tmp_path / "slice_mask.nii.gz")
    mask01, _ = read_image(tmp_path / "slice_mask.nii.gz")
    np.testing.assert_array_equal(mask01, (img > 50).astype(np.uint8))


def test_2d_model_predicts_volume_slice_by_slice():
    cfg = _window_cfg("tiny2d")
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    vol = np.stack([np.full((20, 30), v, np.float32) for v in (10.0, 60.0, 90.0)])
    mask = pred.predict_array(vol, Geometry.default(3))
    assert mask.shape == vol.shape
    assert mask[0].max() == 0 and mask[1].min() == 1 and mask[2].min() == 1


def test_bad_arrays_raise_value_error():
    pred = Predictor(Threshold(), config=_window_cfg("tiny3d"), intensity=None, device="cpu")
    img = np.full((4, 8, 8), 60.0, np.float32)
    img[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN/inf"):
        pred.predict_array(img, Geometry.default(3))
    with pytest.raises(ValueError, match="3D model cannot predict a 2D"):
        pred.predict_array(np.ones((8, 8)), Geometry.default(2))
    with pytest.raises(ValueError, match="4D"):
        pred.predict_array(np.ones((2, 4, 8, 8)), Geometry.default(3))


def test_predict_folder_names_refusal_and_rollback(tmp_path, caplog):
    cfg = _window_cfg("tiny2d")
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        img = np.full((16, 16), 30 * i, np.uint8)
        write_image(img, Geometry.default(2), src / f"c{i}_0000.png")
    (src / "notes.txt").write_text("not an image")
    out = pred.predict_folder(src, tmp_path / "out", progress=False, suffix=".nii.gz")
    assert [p.name for p in out] == ["c0.nii.gz", "c1.nii.gz", "c2.nii.gz"]
    assert "notes.txt" in caplog.text  # skipped entries are reported
    assert read_image(out[2])[0].min() == 1 and read_image(out[0])[0].max() == 0
    before = out[0].read_bytes()
    with pytest.raises(FileExistsError, match="3 output"):
        pred.predict_folder(src, tmp_path / "out", progress=False, suffix=".nii.gz")
    assert out[0].read_bytes() == before
    # A corrupt case in the middle: the error names it and no new output is left behind.
    (src / "c1_0000.png").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match=r"c1_0000\.png"):
        pred.predict_folder(src, tmp_path / "out2", progress=False)
    assert not list((tmp_path / "out2").glob("*.png"))


def test_output_name():
    assert output_name("a/case_0000.nii.gz") == "case.nii.gz"
    assert output_name("a/tr_im_0001.png") == "tr_im_0001.png"
    assert output_name("a/lung1_image.nrrd", ".nii.gz") == "lung1_image.nii.gz"


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "none.ckpt")
    cfg = preset("tiny3d")
    _save(tmp_path / "m.ckpt", cfg)
    payload = torch.load(tmp_path / "m.ckpt", weights_only=False)
    payload["kind"] = "dual"  # weights of a single-encoder network under a dual kind
    save_checkpoint(tmp_path / "bad.ckpt", payload)
    with pytest.raises(CheckpointError, match="do not fit"):
        Predictor.from_checkpoint(tmp_path / "bad.ckpt")


def test_predict_folder_keeps_0000_of_non_nnunet_names(tmp_path):
    # COVID-19-CT100 slices are tr_im_0000.png, tr_im_0001.png, ...: only a folder where every
    # image carries the nnU-Net channel suffix loses it (tr_im_0000.png must not become tr_im.png).
    cfg = _window_cfg("tiny2d")
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    src = tmp_path / "in"
    src.mkdir()
    for name in ("tr_im_0000", "tr_im_0001"):
        write_image(np.full((16, 16), 200, np.uint8), Geometry.default(2), src / f"{name}.png")
    out = pred.predict_folder(src, tmp_path / "out", progress=False)
    assert [p.name for p in out] == ["tr_im_0000.png", "tr_im_0001.png"]
    assert all(p.is_file() for p in out)


def test_predict_folder_never_overwrites_its_inputs(tmp_path):
    # -o equal to -i with --overwrite used to replace the input images with their masks.
    cfg = _window_cfg("tiny2d")
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    src = tmp_path / "in"
    src.mkdir()
    write_image(np.full((16, 16), 200, np.uint8), Geometry.default(2), src / "tr_im_0001.png")
    before = (src / "tr_im_0001.png").read_bytes()
    with pytest.raises(ValueError, match="would overwrite the input"):
        pred.predict_folder(src, src, overwrite=True, progress=False)
    assert (src / "tr_im_0001.png").read_bytes() == before
    with pytest.raises(ValueError, match="would overwrite the input"):
        pred.predict_file(src / "tr_im_0001.png", src / "tr_im_0001.png", overwrite=True)
    assert (src / "tr_im_0001.png").read_bytes() == before


def test_2d_model_on_a_volume_normalises_the_volume_as_training_did():
    # Training caches a 3D case as one normalised volume and samples its slices; prediction used
    # to normalise each slice on its own, which differs for the per-image "zscore" scheme.
    cfg = preset("tiny2d")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, normalization="zscore"))
    pred = Predictor(Threshold(), config=cfg, intensity=None, device="cpu")
    vol = np.zeros((2, 16, 16), np.float32)
    vol[1] = 100.0  # a bright slice: above the volume mean everywhere
    vol[:, 4:8, 4:8] += 10.0
    z = (vol - vol.mean()) / vol.std()
    expected = (z > 0.5).astype(np.uint8)  # Threshold: logit = normalised value - 0.5
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(pred.predict_array(vol, Geometry.default(3)), expected)
