from __future__ import annotations

import math

import numpy as np
import pytest

from rdcl.data.sampling.augment import (
    AugmentParams,
    augment_intensity,
    crop,
    random_flip,
    transformed_crop,
)


def _pair(shape=(6, 9, 11)):
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.uint8)
    label[1:4, 2:5, 3:9] = 1
    label[4, 7, 1] = 1  # an asymmetric extra voxel
    image = (label * 100.0 + rng.uniform(0, 1, size=shape)).astype(np.float32)[None]
    return image, label


def test_flip_moves_image_and_label_together():
    image, label = _pair()
    rng = np.random.default_rng(1)
    flipped_any = False
    for _ in range(10):
        img, lab = random_flip(image, label, rng, p=0.5)
        assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1}
        np.testing.assert_array_equal(img[0] >= 100, lab.astype(bool))
        flipped_any |= not np.array_equal(lab, label)
    assert flipped_any
    img, lab = random_flip(image, label, rng, p=1.0)
    np.testing.assert_array_equal(lab, label[::-1, ::-1, ::-1])


def test_rotation_and_scaling_keep_label_binary_and_aligned():
    _, label = _pair((6, 20, 20))
    scaled = (label * 10.0).astype(np.float32)[None]
    img, lab = transformed_crop(scaled, label, (1, 2, 3), (4, 16, 14), angle=0.2, scale=1.2)
    assert img.shape == (1, 4, 16, 14) and lab.shape == (4, 16, 14)
    assert set(np.unique(lab)) <= {0, 1} and lab.sum() > 0
    # Linear interpolation commutes with scaling by 10: image >= 5 exactly where label >= 0.5.
    np.testing.assert_array_equal(img[0] >= 5.0, lab.astype(bool))


def test_quarter_turn_is_rot90():
    # out[i, j] samples src[h - (j - h), h + (i - h)] = src[n - 1 - j, i]: np.rot90(src, -1).
    src = np.arange(49, dtype=np.float32).reshape(7, 7)
    img, _ = transformed_crop(src[None], None, (0, 0), (7, 7), angle=math.pi / 2)
    np.testing.assert_allclose(img[0], np.rot90(src, -1), atol=1e-4)


def test_identity_transform_is_exact_crop():
    image, label = _pair()
    a = transformed_crop(image, label, (-1, 2, 3), (4, 8, 8))
    b = crop(image, label, (-1, 2, 3), (4, 8, 8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # z -1 and y 9 lie outside the (6, 9, 11) volume: zero padding there.
    np.testing.assert_array_equal(b[0][:, 1:, :7], image[:, 0:3, 2:9, 3:11])
    np.testing.assert_array_equal(b[1][1:, :7], label[0:3, 2:9, 3:11])
    assert (b[0][:, 0] == 0).all() and (b[0][:, :, 7] == 0).all() and (b[1][0] == 0).all()
    with pytest.raises(ValueError, match="does not overlap"):
        crop(image, label, (10, 0, 0), (4, 8, 8))


def test_intensity_augmentation():
    image, _ = _pair()
    rng = np.random.default_rng(2)
    off = AugmentParams(p_brightness=0, p_contrast=0, p_gamma=0, p_noise=0)
    np.testing.assert_array_equal(augment_intensity(image, rng, off), image)
    on = AugmentParams(p_brightness=1, p_contrast=1, p_gamma=1, p_noise=1)
    out = augment_intensity(image, rng, on)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and not np.allclose(out, image)
    gamma_only = AugmentParams(p_brightness=0, p_contrast=0, p_gamma=1, p_noise=0)
    g = augment_intensity(image, rng, gamma_only)
    # Gamma keeps the mean and standard deviation.
    assert g.mean() == pytest.approx(image.mean(), rel=1e-4)
    assert g.std() == pytest.approx(image.std(), rel=1e-4)
