"""Fused relation losses (through the interpreter) against the reference losses."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import relation_losses, relation_losses_reference, relation_matrix_reference


def _features(shapes, c: int, dtype=torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, *s, generator=gen, dtype=dtype) for b, s in shapes]


@pytest.mark.parametrize(
    ("c", "shapes"),
    [
        (17, [(2, (7,)), (3, (9, 4)), (3, (9, 4))]),  # different B and N per input
        (32, [(2, (4099,))] * 3),
        (320, [(1, (7,)), (2, (3,)), (2, (3,))]),
    ],
)
def test_losses_and_gradients_match_reference(interpret, rel_err, c, shapes) -> None:
    feats = _features(shapes, c)
    xs = [f.clone().requires_grad_(True) for f in feats]
    d_g, d_t = relation_losses(*xs)
    x64 = [f.double().requires_grad_(True) for f in feats]
    e_g, e_t = relation_losses_reference(*x64)
    assert d_g.dtype == torch.float32 and d_g.shape == ()
    assert abs(d_g.item() - e_g.item()) <= 1e-5 * e_g.item()
    assert abs(d_t.item() - e_t.item()) <= 1e-5 * e_t.item()
    grads = torch.autograd.grad(0.7 * d_g - 1.3 * d_t, xs)
    expected = torch.autograd.grad(0.7 * e_g - 1.3 * e_t, x64)
    for got, exp in zip(grads, expected, strict=True):
        assert got.shape == exp.shape
        assert rel_err(got, exp) < 1e-5


def test_gradient_routing(interpret) -> None:
    # d_t reaches t_covid only (R(g_covid) is detached); d_g reaches both G inputs, not t_covid.
    xs = [f.requires_grad_(True) for f in _features([(2, (5, 6))] * 3, 17, seed=3)]
    d_g, d_t = relation_losses(*xs)
    g_t = torch.autograd.grad(d_t, xs, retain_graph=True)
    assert (g_t[0] == 0).all() and (g_t[1] == 0).all() and g_t[2].abs().sum() > 0
    g_g = torch.autograd.grad(d_g, xs)
    assert g_g[0].abs().sum() > 0 and g_g[1].abs().sum() > 0 and (g_g[2] == 0).all()


def test_identical_inputs_give_zero_distance(interpret) -> None:
    (x,) = _features([(2, (33,))], 17, seed=4)
    d_g, d_t = relation_losses(x, x * 3.0, x)  # a scale does not change the relation matrix
    assert abs(d_g.item()) < 1e-12 and abs(d_t.item()) < 1e-12


def test_gradcheck_float64(interpret) -> None:
    # d_g in both G inputs, d_t in t_covid (its detached dependence on g_covid is not a gradient)
    g_n, g_c, t_c = (f.requires_grad_(True) for f in _features([(2, (4,))] * 3, 3, torch.float64))
    assert torch.autograd.gradcheck(
        lambda a, b: relation_losses(a, b, t_c)[0], (g_n, g_c), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda t: relation_losses(g_n, g_c, t)[1], (t_c,), fast_mode=True
    )


def test_training_loss_with_kernels_equals_reference_path(interpret) -> None:
    feats = _features([(2, (4, 5, 6))] * 3, 32, seed=6)
    with_kernels = relation_losses(*feats)
    with_reference = relation_losses_reference(*feats)  # what the op runs without the kernels
    for a, b in zip(with_kernels, with_reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_channel_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="same channel count"):
        relation_losses(torch.ones(1, 2, 3), torch.ones(1, 3, 3), torch.ones(1, 2, 3))


def test_sum_is_the_squared_frobenius_norm_and_mean_divides_by_c_squared() -> None:
    feats = _features([(2, (5, 6))] * 3, 17, torch.float64, seed=9)
    d_g, d_t = relation_losses(*feats)
    r = [relation_matrix_reference(f) for f in feats]
    assert d_g.item() == pytest.approx(torch.linalg.matrix_norm(r[0] - r[1]).item() ** 2)
    assert d_t.item() == pytest.approx(torch.linalg.matrix_norm(r[1] - r[2]).item() ** 2)
    m_g, m_t = relation_losses(*feats, reduction="mean")
    assert m_g.item() == pytest.approx(d_g.item() / 17**2)
    assert m_t.item() == pytest.approx(d_t.item() / 17**2)
    e_g, e_t = relation_losses_reference(*feats, reduction="mean")
    assert e_g.item() == pytest.approx(m_g.item()) and e_t.item() == pytest.approx(m_t.item())
    with pytest.raises(ValueError, match="reduction must be one of"):
        relation_losses(*feats, reduction="max")


@pytest.mark.parametrize("reduction", ["row", "mean"])
def test_reduced_losses_and_gradients_match_reference(interpret, rel_err, reduction) -> None:
    # the kernels compute the sums; "row" (/ C) and "mean" (/ C^2) divide them, forward and,
    # through autograd, backward: both must equal the float64 reference of the same reduction
    c, shapes = 17, [(2, (7,)), (3, (9, 4)), (3, (9, 4))]
    feats = _features(shapes, c, seed=11)
    xs = [f.clone().requires_grad_(True) for f in feats]
    d_g, d_t = relation_losses(*xs, reduction=reduction)
    x64 = [f.double().requires_grad_(True) for f in feats]
    e_g, e_t = relation_losses_reference(*x64, reduction=reduction)
    s_g, s_t = relation_losses_reference(*[f.double() for f in feats])
    divisor = {"row": c, "mean": c * c}[reduction]
    assert e_g.item() == pytest.approx(s_g.item() / divisor, rel=1e-12)
    assert e_t.item() == pytest.approx(s_t.item() / divisor, rel=1e-12)
    assert abs(d_g.item() - e_g.item()) <= 1e-5 * e_g.item()
    assert abs(d_t.item() - e_t.item()) <= 1e-5 * e_t.item()
    grads = torch.autograd.grad(0.7 * d_g - 1.3 * d_t, xs)
    expected = torch.autograd.grad(0.7 * e_g - 1.3 * e_t, x64)
    for got, exp in zip(grads, expected, strict=True):
        assert rel_err(got, exp) < 1e-5


def test_gradcheck_row_reduction_float64(interpret) -> None:
    g_n, g_c, t_c = (f.requires_grad_(True) for f in _features([(2, (4,))] * 3, 3, torch.float64))
    assert torch.autograd.gradcheck(
        lambda a, b: relation_losses(a, b, t_c, reduction="row")[0], (g_n, g_c), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda t: relation_losses(g_n, g_c, t, reduction="row")[1], (t_c,), fast_mode=True
    )


@pytest.mark.parametrize("c", [2, 8, 32, 128])
def test_sum_grows_with_c_and_row_does_not(c: int) -> None:
    # orthogonal channels (F = I) give R = I; identical channels give R = J / sqrt(C) (J all
    # ones): ||I - J / sqrt(C)||_F^2 = C (1 - 1/sqrt(C))^2 + (C^2 - C) / C = 2C - 2 sqrt(C).
    # The sum grows like C (at most 4C), "row" tends to 2 (at most 4), "mean" falls like 2 / C.
    orthogonal = torch.eye(c, dtype=torch.float64)[None]
    identical = torch.ones(1, c, c, dtype=torch.float64)
    closed = 2 * c - 2 * c**0.5
    for reduction, divisor in (("sum", 1), ("row", c), ("mean", c * c)):
        d_g, d_t = relation_losses(orthogonal, identical, orthogonal, reduction=reduction)
        assert d_g.item() == pytest.approx(closed / divisor, rel=1e-9), reduction
        assert d_t.item() == pytest.approx(closed / divisor, rel=1e-9), reduction
    row, _ = relation_losses(orthogonal, identical, orthogonal, reduction="row")
    assert row.item() == pytest.approx(2 - 2 / c**0.5, rel=1e-9) and row.item() <= 4
