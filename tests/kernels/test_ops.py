"""Custom-op registration: dispatch, fake tensors, opcheck and torch.compile."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import ops, relation_matrix, relation_matrix_reference


def test_cpu_tensors_take_the_reference_path_without_the_interpreter(compiled) -> None:
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    assert not ops.use_triton(x)
    torch.testing.assert_close(relation_matrix(x), relation_matrix_reference(x))
    torch.testing.assert_close(relation_matrix(x, None), relation_matrix_reference(x, None))


def test_the_interpreter_is_chosen_once_per_process(interpret, monkeypatch) -> None:
    x = torch.ones(1, 2, 3)
    assert ops.INTERPRETING and ops.use_triton(x)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # read at import only: no effect now
    assert ops.INTERPRETING and ops.use_triton(x)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="reduce must be"):
        relation_matrix(torch.ones(2, 3, 4), reduce="sum")
    with pytest.raises(ValueError, match="at least 2 dims"):
        relation_matrix(torch.ones(4))


def test_fake_tensor_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 17, 5, 6, dtype=torch.bfloat16)
        r, norms = ops.relation_matrix_op(x, False)
        rs, _ = ops.relation_matrix_op(x, True)
        losses, rl, nl = ops.relation_losses_op(x, x, x)
    assert r.shape == (17, 17) and norms.shape == (17,) and r.dtype == torch.float32
    assert rs.shape == (2, 17, 17)
    assert losses.shape == (2,) and rl.shape == (3, 17, 17) and nl.shape == (3, 17)


def test_opcheck(interpret) -> None:
    x = torch.randn(2, 17, 6, requires_grad=True)
    for per_sample in (False, True):
        torch.library.opcheck(ops.relation_matrix_op, (x, per_sample))
    xs = [torch.randn(2, 17, 6, requires_grad=True) for _ in range(3)]
    torch.library.opcheck(ops.relation_losses_op, tuple(xs))


def test_torch_compile(interpret) -> None:
    def step(x: torch.Tensor) -> torch.Tensor:
        return (relation_matrix(x * 2.0) ** 2).sum()

    x = torch.randn(2, 17, 9, requires_grad=True)
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    (got,) = torch.autograd.grad(compiled(x), x)
    (expected,) = torch.autograd.grad(step(x), x)
    torch.testing.assert_close(got, expected)
