from __future__ import annotations

import itertools

import pytest
import torch

from rdcl.inference.sliding_window import (
    GAUSSIAN_FLOOR,
    compute_steps,
    gaussian_importance_map,
    sliding_window,
)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def test_compute_steps_hand_derived():
    # n=100, p=64, step 0.5: target step 32 -> ceil(36 / 32) + 1 = 3 tiles, spread evenly over
    # the 36 free voxels: 0, 18, 36.
    assert compute_steps((100,), (64,), 0.5) == [[0, 18, 36]]
    # n == p: one tile.
    assert compute_steps((64, 32), (64, 32), 0.5) == [[0], [0]]
    # n=10, p=4, step 0.5: ceil(6 / 2) + 1 = 4 tiles, stride 2: 0, 2, 4, 6.
    assert compute_steps((10,), (4,), 0.5) == [[0, 2, 4, 6]]
    # n=11, p=4, step 0.5: ceil(7 / 2) + 1 = 5 tiles, stride 7/4 = 1.75 -> round(0, 1.75, 3.5,
    # 5.25, 7) = 0, 2, 4 (banker's rounding of 3.5), 5, 7.
    assert compute_steps((11,), (4,), 0.5) == [[0, 2, 4, 5, 7]]
    # step 1.0 with n=9, p=4: ceil(5 / 4) + 1 = 3 tiles, stride 2.5 -> 0, 2 (round 2.5), 5.
    assert compute_steps((9,), (4,), 1.0) == [[0, 2, 5]]


def test_compute_steps_covers_image_and_rejects_bad_input():
    for n in range(8, 40):
        (starts,) = compute_steps((n,), (8,), 0.5)
        assert starts[0] == 0 and starts[-1] == n - 8
        assert all(b - a <= 4 for a, b in itertools.pairwise(starts))
    with pytest.raises(ValueError, match="fit inside"):
        compute_steps((5,), (8,), 0.5)
    with pytest.raises(ValueError, match="step_fraction"):
        compute_steps((16,), (8,), 0.0)
    with pytest.raises(ValueError, match="same number of axes"):
        compute_steps((16, 16), (8,), 0.5)


@pytest.mark.parametrize("patch", [(8, 8), (7, 10), (5, 8, 9)])
def test_gaussian_map_symmetric_positive_peak_one(patch):
    w = gaussian_importance_map(patch)
    assert w.shape == patch and w.dtype == torch.float32
    assert torch.all(w >= GAUSSIAN_FLOOR)
    assert w.max().item() == pytest.approx(1.0)
    for axis in range(len(patch)):
        torch.testing.assert_close(w, torch.flip(w, (axis,)))
    # Along one axis through the centre the profile is exp(-d^2 / (2 sigma^2)), sigma = p / 8:
    # for p = 8 the corner voxel is d = 3.5 from the centre (3.5), sigma = 1 -> exp(-6.125)
    # per axis relative to the peak; the centre voxels d = 0.5 have exp(-0.125).
    if patch == (8, 8):
        ratio = (w[0, 3] / w[3, 3]).item()
        assert ratio == pytest.approx(torch.exp(torch.tensor(-6.125 + 0.125)).item(), rel=1e-5)


@pytest.mark.parametrize(
    ("shape", "patch"),
    [
        ((2, 20, 23), (8, 8)),  # 2D, non-multiple sizes, two channels
        ((1, 5, 6), (8, 8)),  # 2D image smaller than the patch on both axes
        ((1, 11, 4), (8, 8)),  # smaller on one axis only
        ((1, 9, 17, 13), (4, 8, 8)),  # 3D non-multiples
        ((1, 3, 5, 20), (4, 8, 8)),  # 3D smaller on two axes
    ],
)
@pytest.mark.parametrize("gaussian", [True, False])
def test_identity_model_reconstructs_input(shape, patch, gaussian):
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(shape, generator=gen) * 100 - 300
    out = sliding_window(_identity, image, patch, step=0.5, tile_batch=3, gaussian=gaussian)
    assert out.shape == image.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, image, rtol=1e-5, atol=1e-3)


def test_list_output_and_mirroring_with_identity():
    image = torch.randn(1, 12, 14, generator=torch.Generator().manual_seed(1))
    calls = []

    def net(x):
        calls.append(x.shape[0])
        return [x * 2.0, x[..., ::2, ::2]]  # a deep-supervision style list

    out = sliding_window(net, image, (8, 8), tile_batch=2, mirror_axes=(0, 1))
    torch.testing.assert_close(out, image * 2.0, rtol=1e-5, atol=1e-5)
    # 12 -> ceil(4 / 4) + 1 = 2 starts, 14 -> ceil(6 / 4) + 1 = 3 starts: 6 tiles in batches of
    # 2 -> 3 batches x 4 flip combinations.
    assert len(calls) == 12


def test_gaussian_weighting_differs_from_uniform():
    # A network whose output depends on where the voxel sits in the tile (its position channel):
    # Gaussian weighting favours central positions, so the two averages must differ.
    image = torch.zeros(1, 16)

    def net(x):
        pos = torch.arange(x.shape[-1], dtype=torch.float32)
        return pos.expand_as(x).clone()

    g = sliding_window(net, image, (8,), gaussian=True)
    u = sliding_window(net, image, (8,), gaussian=False)
    # Voxel 4 is covered by tiles starting at 0 (position 4) and 4 (position 0): uniform mean 2.
    assert u[0, 4].item() == pytest.approx(2.0)
    # Gaussian: position 4 (near centre 3.5) outweighs position 0 (edge), so the mean is > 2.
    assert g[0, 4].item() > 3.0


def test_bad_arguments():
    image = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window(_identity, image, (4, 4, 4))
    with pytest.raises(ValueError, match="tile_batch"):
        sliding_window(_identity, image, (4, 4), tile_batch=0)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window(_identity, image, (4, 4), mirror_axes=(2,))
    with pytest.raises(ValueError, match="amp"):
        sliding_window(_identity, image, (4, 4), amp="fp8")
    with pytest.raises(ValueError, match="net_fn must return"):
        sliding_window(lambda x: x[..., :2], image, (4, 4))


def test_bf16_autocast_on_cpu_close_to_fp32():
    image = torch.randn(1, 10, 10, generator=torch.Generator().manual_seed(2))
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    out32 = sliding_window(conv, image, (8, 8))
    out16 = sliding_window(conv, image, (8, 8), amp="bf16")
    assert out16.dtype == torch.float32
    torch.testing.assert_close(out16, out32, rtol=0.05, atol=0.05)
