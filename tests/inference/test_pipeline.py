"""The predictor pipeline (rdcl.inference.pipeline) against its oracles: scipy's zoom for the
resampling, training's cache code (numpy normalisation, scipy resampling) for the whole eager
prediction, and its own scripted form for export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from rdcl.config import NORMALIZATIONS, preset
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.intensity import IntensityStats, normalize
from rdcl.data.preprocessing.preprocess import preprocess_case, restore
from rdcl.export.torchscript import trace_network
from rdcl.formats.exported import METHODS
from rdcl.inference import Predictor, sliding_window
from rdcl.inference.pipeline import PredictorPipeline, resize, run_pipeline
from rdcl.model import build_network

STATS = IntensityStats(mean=-500.0, std=300.0, lo=-1000.0, hi=200.0)


@pytest.mark.parametrize(
    ("shape", "out", "order"),
    [
        ((20, 40, 44), (25, 35, 38), 3),
        ((20, 40, 44), (25, 35, 38), 1),
        ((7, 33, 50), (7, 60, 20), 3),
        ((5, 9), (13, 4), 3),
        ((3, 31, 30), (3, 16, 61), 1),
        ((1, 6, 5), (1, 2, 11), 3),  # a single slice, and a 6 -> 2 shrink
    ],
)
def test_torch_resampling_equals_scipy_zoom(shape, out, order):
    # The pipeline's spline/linear resampling reproduces scipy.ndimage.zoom (grid mode, mode
    # "nearest"), the resampling of training's cache, to float rounding.
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 100
    zoom = [n / o for n, o in zip(out, shape, strict=True)]
    ref = ndimage.zoom(x, zoom, order=order, mode="nearest", grid_mode=True)
    dim = 2 if len(shape) == 2 or out[0] == shape[0] else 3
    got = resize(torch.from_numpy(x), list(out), dim, order)
    assert got.dtype == torch.float32 and tuple(got.shape) == out
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-4)


def _pipeline(normalization: str, window=(-1250.0, 250.0)) -> PredictorPipeline:
    return PredictorPipeline(
        torch.nn.Identity(),
        dim=3,
        patch=(4, 8, 8),
        target_spacing=None,
        normalization=normalization,
        training_window=window,
        stats=STATS,
    )


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_normalisation_equals_training_normalisation(normalization):
    # The same schemes as training's cache (rdcl.data.preprocessing.intensity), to float32 rounding.
    image = np.random.default_rng(1).integers(-1200, 400, size=(6, 10, 12)).astype(np.float32)
    got = _pipeline(normalization)._normalize(torch.from_numpy(image)).numpy()
    want = normalize(image, normalization, stats=STATS, window=(-1250.0, 250.0))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bad_settings_are_refused_with_the_eager_messages():
    with pytest.raises(ValueError, match="normalization must be 'ct', 'window' or 'zscore'"):
        _pipeline("minmax")
    with pytest.raises(ValueError, match="needs IntensityStats"):
        PredictorPipeline(
            torch.nn.Identity(), dim=3, patch=(4, 8, 8), target_spacing=None,
            normalization="ct", training_window=(0.0, 1.0), stats=None,
        )  # fmt: skip
    with pytest.raises(ValueError, match="window expected"):
        _pipeline("window", window=(5.0, 5.0))
    with pytest.raises(ValueError, match="step_fraction"):
        PredictorPipeline(
            torch.nn.Identity(), dim=3, patch=(4, 8, 8), target_spacing=None,
            normalization="zscore", training_window=(0.0, 1.0), stats=None, step=0.0,
        )  # fmt: skip


def _predictor(name: str, **data: object) -> Predictor:
    cfg = preset(name)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, **data))
    torch.manual_seed(0)
    return Predictor(
        build_network(cfg.model, kind="single"), config=cfg, intensity=STATS, device="cpu"
    )


def _scipy_oracle(pred: Predictor, image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The prediction as training's cache code preprocesses: numpy normalisation, scipy spline
    resampling, the sliding window, scipy linear resampling back."""
    data, _, props = preprocess_case(image, geometry, pred.config.data, pred.intensity)
    x = torch.from_numpy(data)

    def probs(t: torch.Tensor) -> np.ndarray:
        net = lambda b: pred.network(b)[0]  # noqa: E731
        logits = sliding_window(net, t, pred.config.data.patch_size, device="cpu")
        return torch.sigmoid(logits[0]).numpy()

    if pred.dim == image.ndim:
        prob = probs(x)
    else:
        prob = np.stack([probs(x[:, z]) for z in range(x.shape[1])])
    return restore(prob, props)


@pytest.mark.parametrize(
    ("name", "data", "shape", "spacing"),
    [
        ("tiny3d", {"normalization": "ct", "target_spacing": (2.0, 1.5, 1.5)}, (14, 40, 44),
         (2.5, 1.3, 1.3)),
        ("tiny2d", {"normalization": "zscore", "target_spacing": (1.2, 1.2)}, (4, 50, 46),
         (3.0, 0.9, 0.9)),
    ],
)  # fmt: skip
def test_predictor_agrees_with_the_scipy_oracle(name, data, shape, spacing):
    from rdcl.data.synth import synthesize_phantom

    pred = _predictor(name, **data)
    ph = synthesize_phantom("covid", shape, spacing, np.random.default_rng(3))
    geometry = Geometry.default(3, spacing)
    got = pred.predict_probabilities(ph.image, geometry)
    want = _scipy_oracle(pred, ph.image, geometry)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    a, b = got > 0.5, want > 0.5
    assert 0 < b.sum() < b.size
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999


def test_scripted_pipeline_is_the_eager_pipeline_bitwise():
    # Equality by construction: scripting the module the eager predictor runs changes nothing.
    pred = _predictor("tiny3d", normalization="ct", target_spacing=(2.0, 1.5, 1.5))
    pred.mirror, pred.tile_batch = True, 3
    image = np.random.default_rng(4).integers(-1100, 300, size=(10, 36, 30)).astype(np.int16)
    spacing = (2.5, 1.3, 1.7)
    traced = trace_network(pred)  # what rdcl export puts inside (scripting needs it)
    eager = pred.pipeline(traced)
    scripted = torch.jit.script(pred.pipeline(traced))
    for window in (None, (-1000.0, 100.0)):
        want = run_pipeline(eager, image, spacing, window)
        got = run_pipeline(scripted, image, spacing, window)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        pred.predict_probabilities(image, Geometry.default(3, spacing)),
        run_pipeline(eager, image, spacing),
    )
    # the method list of rdcl.json names exactly the methods the scripted file offers
    export = torch._jit_internal.FunctionModifiers.EXPORT
    offered = {"forward"} | {
        name
        for name, fn in vars(PredictorPipeline).items()
        if callable(fn) and torch._jit_internal.get_torchscript_modifier(fn) == export
    }
    assert offered == set(METHODS)
    assert all(callable(getattr(scripted, m)) for m in METHODS)


def test_amp_runs_the_network_under_autocast():
    pred = _predictor("tiny3d", normalization="ct")
    image = np.random.default_rng(5).integers(-1100, 300, size=(12, 40, 40)).astype(np.int16)
    geometry = Geometry.default(3, (2.0, 1.0, 1.0))
    fp32 = pred.predict_probabilities(image, geometry)
    pred.amp = "bf16"
    bf16 = pred.predict_probabilities(image, geometry)
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
