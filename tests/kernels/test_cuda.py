"""The compiled Triton path on a CUDA device against the float64 reference (skipped without one)."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import (
    ops,
    relation_losses,
    relation_losses_reference,
    relation_matrix,
    relation_matrix_reference,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("shape", [(2, 320, 7, 5, 6), (2, 33, 257), (3, 17, 4099), (2, 1, 7)])
def test_cuda_matches_float64_reference(compiled, rel_err, shape) -> None:
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(shape, generator=gen) for _ in range(3)]
    xs = [f.cuda().requires_grad_(True) for f in feats]
    assert ops.use_triton(*xs)
    x64 = [f.double().requires_grad_(True) for f in feats]
    for reduce in ("mean", None):
        r = relation_matrix(xs[0], reduce)
        r64 = relation_matrix_reference(x64[0], reduce)
        assert (r.double().cpu() - r64).abs().max().item() < 1e-5
    d = relation_losses(*xs)
    e = relation_losses_reference(*x64)
    grads = torch.autograd.grad(d[0] - d[1], xs)
    expected = torch.autograd.grad(e[0] - e[1], x64)
    for got, exp in zip(grads, expected, strict=True):
        assert rel_err(got.cpu(), exp) < 1e-5
