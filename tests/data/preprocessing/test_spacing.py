"""data.target_spacing "auto": nnU-Net's rule over the training set, recorded with the run and
used at prediction (issue 11, item 24: a model trained on 8.5 mm phantoms ran at 1 mm on a real
CT because nothing was resampled)."""

from __future__ import annotations

import numpy as np
import pytest

from rdcl.config import DataConfig, preset
from rdcl.data.io import Geometry
from rdcl.data.preprocessing.preprocess import preprocess_case
from rdcl.data.preprocessing.spacing import nnunet_target_spacing


def test_isotropic_data_take_the_median():
    spacings = [(1.0, 0.8, 0.8), (1.5, 0.7, 0.7), (2.0, 0.9, 0.9)]
    shapes = [(100, 200, 200)] * 3
    assert nnunet_target_spacing(spacings, shapes) == pytest.approx((1.5, 0.8, 0.8))


def test_anisotropic_axis_takes_its_10th_percentile():
    # z is > 3x coarser than x/y and has < 1/3 of their voxels: z uses its 10th percentile
    spacings = [(5.0, 0.7, 0.7), (5.0, 0.7, 0.7), (3.0, 0.7, 0.7), (2.5, 0.7, 0.7), (5.0, 0.7, 0.7)]
    shapes = [(40, 512, 512)] * 5
    assert nnunet_target_spacing(spacings, shapes) == pytest.approx((2.7, 0.7, 0.7))
    # anisotropic spacing but as many voxels along z: the median stays
    many = [(400, 512, 512)] * 5
    assert nnunet_target_spacing(spacings, many) == pytest.approx((5.0, 0.7, 0.7))


def test_coarse_percentile_never_finer_than_the_other_axes():
    spacings = [(0.5, 2.0, 0.5)] + [(0.5, 8.0, 0.5)] * 4
    shapes = [(512, 40, 512)] * 5
    y = nnunet_target_spacing(spacings, shapes)[1]
    assert y == pytest.approx(np.percentile([2.0, 8, 8, 8, 8], 10))
    low = [(2.0, 0.2, 2.0)] + [(2.0, 8.0, 2.0)] * 4  # 10th percentile 3.32 > 2: kept
    assert nnunet_target_spacing(low, shapes)[1] == pytest.approx(3.32)
    finer = [(2.0, 0.2, 2.0)] * 2 + [(2.0, 8.0, 2.0)] * 3  # 10th percentile 0.2 < 2
    assert nnunet_target_spacing(finer, shapes)[1] == pytest.approx(2.0 + 1e-5, abs=1e-9)


def test_bad_spacings_are_refused():
    with pytest.raises(ValueError, match="positive finite"):
        nnunet_target_spacing([(0.0, 1.0)], [(4, 4)])
    with pytest.raises(ValueError, match="N >= 1"):
        nnunet_target_spacing([], [])


def test_default_is_auto_and_unresolved_auto_keeps_the_grid():
    assert DataConfig().target_spacing == "auto"
    assert preset("paper3d").data.target_spacing == "auto"
    image = np.zeros((4, 8, 8), np.float32)
    geom = Geometry((2.0, 1.0, 1.0), (0.0,) * 3, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    _, _, props = preprocess_case(image, geom, DataConfig(normalization="zscore"), None)
    assert props["resampled_shape"] == [4, 8, 8]


def test_training_records_the_median_and_prediction_resamples_to_it(tmp_path):
    """Train on 2D phantoms (6.4 mm pixels) with the default config: the run's config and
    checkpoint hold (6.4, 6.4) and the predictor resamples a 3.2 mm image to that grid."""
    import dataclasses

    from rdcl.data.synth import synthesize_dataset
    from rdcl.inference import Predictor
    from rdcl.training import load_checkpoint, run_training

    data = synthesize_dataset(tmp_path / "covid", kind="covid", seed=0, n_cases=2, dim=2,
                              shape=(64, 64))  # fmt: skip
    cfg = preset("tiny2d")
    assert cfg.data.target_spacing == "auto"
    cfg = cfg.replace(
        data=dataclasses.replace(cfg.data, patch_size=(32, 32), batch_size=2),
        train=dataclasses.replace(cfg.train, method="baseline", steps=1, device="cpu"),
    )
    final = run_training(cfg, data, None, tmp_path / "run", progress=False)
    saved = load_checkpoint(final)["config"]["data"]["target_spacing"]
    assert tuple(saved) == pytest.approx((6.4, 6.4))
    pred = Predictor.from_checkpoint(final, device="cpu")
    fine = Geometry((3.2, 3.2), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    image = np.zeros((128, 128), np.float32)
    _, _, props = preprocess_case(image, fine, pred.config.data, pred.intensity,
                                  normalization="zscore")  # fmt: skip
    assert props["resampled_shape"] == [64, 64]
    mask = pred.predict_array(image, fine)
    assert mask.shape == (128, 128)
