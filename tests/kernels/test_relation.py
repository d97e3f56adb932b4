"""Triton relation matrix (through the interpreter) against the float64 reference."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import relation_matrix, relation_matrix_reference
from rdcl.kernels.reference import relation_matrix_backward_reference

# (B, C, spatial): every C in {1, 17, 32, 33, 320}, N in {1, 7, 257, 4099}, B in {1, 2, 3}, 1D-3D
# spatial, pruned so that the interpreter stays fast.
CASES = [
    (1, 1, (1,)),
    (2, 17, (7,)),
    (3, 33, (257,)),
    (2, 32, (4099,)),
    (1, 320, (7,)),
    (2, 320, (3, 5, 6)),
    (3, 17, (16, 16, 16)),
    (2, 33, (7, 37)),
]


def _check_against_reference(
    x: torch.Tensor, reduce: str | None, rel_err, tol: float = 1e-5
) -> None:
    """Forward and gradient of the op on ``x`` vs float64 autograd through the reference."""
    xk = x.detach().clone().requires_grad_(True)
    r = relation_matrix(xk, reduce)
    x64 = x.detach().double().requires_grad_(True)
    r64 = relation_matrix_reference(x64, reduce)
    assert r.shape == r64.shape and r.dtype == torch.float32
    assert (r.double() - r64).abs().max().item() < tol
    weight = torch.randn(r64.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((r * weight.float()).sum(), xk)
    (grad64,) = torch.autograd.grad((r64 * weight).sum(), x64)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert rel_err(grad, grad64) < tol


@pytest.mark.parametrize(("b", "c", "spatial"), CASES)
def test_batch_mean_matches_reference(
    interpret, rel_err, b: int, c: int, spatial: tuple[int, ...]
) -> None:
    x = torch.randn(b, c, *spatial, generator=torch.Generator().manual_seed(c + b))
    _check_against_reference(x, "mean", rel_err)


@pytest.mark.parametrize(("b", "c", "spatial"), [CASES[1], CASES[2], CASES[3], CASES[7]])
def test_per_sample_matches_reference(
    interpret, rel_err, b: int, c: int, spatial: tuple[int, ...]
) -> None:
    x = torch.randn(b, c, *spatial, generator=torch.Generator().manual_seed(7))
    _check_against_reference(x, None, rel_err)


def test_non_contiguous_input(interpret, rel_err) -> None:
    base = torch.randn(3, 40, 9, 11, generator=torch.Generator().manual_seed(3))
    x = base.transpose(2, 3)[:, 5:38:2]  # (3, 17, 11, 9), strided channels, swapped spatial axes
    assert not x.is_contiguous()
    _check_against_reference(x, "mean", rel_err)
    _check_against_reference(x, None, rel_err)


def test_hand_derived_two_channels(interpret, rel_err) -> None:
    # A = mean of [[1,0],[0,2]] and [[3,0],[0,2]] over the batch = [[2,0],[0,2]]; rows orthogonal,
    # so G = diag(4, 4) and R = I.
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 2.0]]])
    torch.testing.assert_close(relation_matrix(x), torch.eye(2))
    # Per sample: sample 0 has G = diag(1, 4) -> R = I as well; the channels [1, 1], [1, 1] are
    # parallel: G = [[2, 2], [2, 2]] -> every row normalises to [1, 1] / sqrt(2).
    y = torch.ones(1, 2, 2)
    torch.testing.assert_close(relation_matrix(y, None)[0], torch.full((2, 2), 0.5**0.5))


def test_zero_channels_give_zero_rows_and_finite_gradients(interpret, rel_err) -> None:
    x = torch.randn(2, 17, 33, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x[:, 3] = 0.0
    x[1, 9] = 0.0  # zero in one sample only: zero per-sample row, non-zero batch-mean row
    for reduce in ("mean", None):
        xk = x.clone().requires_grad_(True)
        r = relation_matrix(xk, reduce)
        assert torch.isfinite(r).all()
        assert (r[..., 3, :] == 0).all() and (r[..., :, 3] == 0).all()
        if reduce is None:
            assert (r[1, 9] == 0).all()
        weight = torch.randn(r.shape, dtype=torch.float64)
        (grad,) = torch.autograd.grad((r * weight).sum(), xk)
        assert torch.isfinite(grad).all()
        x64 = x.clone().requires_grad_(True)
        r64 = relation_matrix_reference(x64, reduce)
        (grad64,) = torch.autograd.grad((r64 * weight).sum(), x64)
        assert rel_err(grad, grad64) < 1e-9


def test_gradcheck_float64(interpret, rel_err) -> None:
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: relation_matrix(t), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: relation_matrix(t, None), (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_accumulate_in_fp32(interpret, rel_err, dtype: torch.dtype) -> None:
    x = torch.randn(2, 33, 257, generator=torch.Generator().manual_seed(5)).to(dtype)
    xk = x.clone().requires_grad_(True)
    r = relation_matrix(xk)
    assert r.dtype == torch.float32
    # fp32 accumulation of the exactly representable inputs: as accurate as the fp32 reference
    assert (r.double() - relation_matrix_reference(x.double())).abs().max().item() < 1e-5
    weight = torch.randn(r.shape, generator=torch.Generator().manual_seed(8))
    (grad,) = torch.autograd.grad((r * weight).sum(), xk)
    assert grad.dtype == dtype
    x64 = x.double().requires_grad_(True)
    (grad64,) = torch.autograd.grad((relation_matrix_reference(x64) * weight.double()).sum(), x64)
    # flash-attention's rule: at most twice the error of PyTorch's own run at this precision
    xt = x.clone().requires_grad_(True)
    (grad_torch,) = torch.autograd.grad((relation_matrix_reference(xt) * weight).sum(), xt)
    own = rel_err(grad_torch, grad64)
    assert rel_err(grad, grad64) <= 2 * own + 1e-6


def test_split_k_is_deterministic_and_split_independent(interpret, rel_err) -> None:
    from rdcl.kernels import gram_forward as forward

    x = torch.randn(2, 32, 4099, generator=torch.Generator().manual_seed(6))
    r1, n1 = forward.relation_forward(x, splits=1)
    r7, n7 = forward.relation_forward(x, splits=7)
    r7b, _ = forward.relation_forward(x, splits=7)
    assert torch.equal(r7, r7b)
    torch.testing.assert_close(r1, r7, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(n1, n7, rtol=1e-6, atol=1e-6)


def test_closed_form_reference_backward_matches_autograd(rel_err) -> None:
    x = torch.randn(3, 17, 4, 5, dtype=torch.float64, requires_grad=True)
    for reduce in ("mean", None):
        r = relation_matrix_reference(x, reduce)
        weight = torch.randn(r.shape, dtype=torch.float64)
        (expected,) = torch.autograd.grad((r * weight).sum(), x)
        a = x.detach().reshape(3, 17, -1)
        a = a.mean(0, keepdim=True) if reduce == "mean" else a
        norms = torch.linalg.vector_norm(a @ a.transpose(1, 2), dim=-1)
        got = relation_matrix_backward_reference(weight, x.detach(), r.detach(), norms, reduce)
        assert rel_err(got, expected) < 1e-12
