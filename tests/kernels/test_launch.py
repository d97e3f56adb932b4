"""The launch side of the Triton path: the matrix table, dtypes, and the per-process mode."""

from __future__ import annotations

import pytest
import torch
from rdcl.kernels import relation_losses, relation_losses_reference, relation_matrix, runtime
from rdcl.kernels.reference import relation_matrix_reference

triton = pytest.importorskip("triton")
launch = pytest.importorskip("rdcl.kernels.launch")


def _rows(table: torch.Tensor) -> list[dict[str, int]]:
    return [dict(zip(launch.TABLE_COLUMNS, row, strict=True)) for row in table.tolist()]


def test_batch_mean_table_has_one_row_per_input_with_addresses_sizes_and_strides() -> None:
    a = torch.randn(2, 5, 7)
    b = torch.randn(3, 12, 5, 4).transpose(1, 2).reshape(3, 5, -1)[:, :, ::2]  # strided view
    grads = (torch.empty(2, 5, 7), torch.empty(3, 5, 24))
    table, hints = launch.matrix_table((a, b), False, grads)
    rows = _rows(table)
    assert rows == [
        dict(x=a.data_ptr(), batch=2, n=7, stride_b=35, stride_c=7, stride_n=1,
             grad=grads[0].data_ptr()),
        dict(x=b.data_ptr(), batch=3, n=b.shape[2], stride_b=b.stride(0), stride_c=b.stride(1),
             stride_n=b.stride(2), grad=grads[1].data_ptr()),
    ]  # fmt: skip
    assert b.stride(2) == 2 and hints == dict(UNIT_N=False, ALIGNED=False, N16=False)
    assert launch.matrix_table((a,), False).hints["UNIT_N"]


def test_hints_state_what_triton_would_have_specialised_on() -> None:
    x = torch.randn(2, 16, 64)  # fresh allocations are 16-byte aligned; strides 1024, 64, 1
    assert launch.matrix_table((x,), False).hints == dict(UNIT_N=True, ALIGNED=True, N16=True)
    assert launch.matrix_table((x,), True).hints["ALIGNED"]  # per-sample rows: + b * 1024 * 4 B
    assert not launch.matrix_table((x[:, :, 1:],), False).hints["ALIGNED"]  # address + 4 B
    assert not launch.matrix_table((x[:, :, :63],), False).hints["N16"]
    grads = (torch.empty(2, 16, 64)[:, :, 1:],)  # a misaligned gradient buffer
    assert not launch.matrix_table((x[:, :, :63],), False, grads).hints["ALIGNED"]


def test_per_sample_table_has_one_row_per_sample() -> None:
    x = torch.randn(4, 3, 6, dtype=torch.float64)[1:]  # storage offset: data_ptr includes it
    grad = torch.empty(3, 3, 6, dtype=torch.float64)
    rows = _rows(launch.matrix_table((x,), True, (grad,)).table)
    assert [r["x"] for r in rows] == [x[i].data_ptr() for i in range(3)]
    assert [r["grad"] for r in rows] == [grad[i].data_ptr() for i in range(3)]
    assert {(r["batch"], r["n"], r["stride_b"]) for r in rows} == {(1, 6, 18)}
    assert _rows(launch.matrix_table((x,), True).table)[0]["grad"] == 0  # forward: no gradient


def test_interpreter_refuses_non_cpu_tensors(interpret) -> None:
    with pytest.raises(RuntimeError, match="CPU tensors only, found meta"):
        launch.matrix_table((torch.empty(2, 3, 4, device="meta"),), False)


def test_unsupported_dtype_is_named() -> None:
    assert launch.tl_dtype(torch.bfloat16) == triton.language.bfloat16
    with pytest.raises(ValueError, match=r"found torch\.int32"):
        launch.tl_dtype(torch.int32)


def _kernel_modules():
    from rdcl.kernels import gram_backward, gram_forward, relation_loss

    return gram_forward, gram_backward, relation_loss


def _check_decorated_for_this_process() -> None:
    from triton.runtime.interpreter import InterpretedFunction

    gram_forward, gram_backward, relation_loss = _kernel_modules()
    kernels = (
        gram_forward._relation_gram_kernel,
        gram_forward.load_matrix,  # imported from jit_helpers
        gram_backward._relation_features_grad_kernel,
        relation_loss._relation_loss_fwd_kernel,
        relation_loss.row_floor,
    )
    assert all(isinstance(k, InterpretedFunction) == runtime.INTERPRETING for k in kernels)


def test_kernels_are_compiled_in_a_process_without_the_interpreter(compiled) -> None:
    assert not runtime.INTERPRETING
    _check_decorated_for_this_process()


def test_kernels_are_interpreted_in_an_interpreter_process(interpret) -> None:
    assert runtime.INTERPRETING
    _check_decorated_for_this_process()


def test_strided_spatial_axis_matches_reference(interpret, rel_err) -> None:
    # stride_n = 2 for every input (the general, non-UNIT_N path), different B and N per input
    gen = torch.Generator().manual_seed(11)
    bases = [torch.randn(b, 17, 2 * n, generator=gen) for b, n in ((2, 9), (3, 20), (3, 20))]
    feats = [base[..., ::2] for base in bases]
    xs = [base.clone().requires_grad_(True)[..., ::2] for base in bases]  # strided views in graph
    assert all(x.stride(2) == 2 for x in xs)
    d_g, d_t = relation_losses(*xs)
    x64 = [f.double().requires_grad_(True) for f in feats]
    e_g, e_t = relation_losses_reference(*x64)
    assert abs(d_g.item() - e_g.item()) <= 1e-5 * e_g.item()
    assert abs(d_t.item() - e_t.item()) <= 1e-5 * e_t.item()
    grads = torch.autograd.grad(0.7 * d_g - 1.3 * d_t, xs)
    expected = torch.autograd.grad(0.7 * e_g - 1.3 * e_t, x64)
    for got, exp in zip(grads, expected, strict=True):
        assert rel_err(got, exp) < 1e-5
    for reduce in ("mean", None):
        r = relation_matrix(feats[1], reduce)
        assert (
            r.double() - relation_matrix_reference(feats[1].double(), reduce)
        ).abs().max() < 1e-5


def test_kernel_names_say_relation() -> None:
    # a GPU profile shows only the kernel name; bench/profile_step.py files "relation" under
    # "relation + loss" (names like _normalize_kernel landed under "optimizer" via "norm")
    kernels = [
        name
        for module in _kernel_modules()
        for name, value in vars(module).items()
        if name.endswith("_kernel") and getattr(value, "fn", None) is not None
    ]
    assert len(kernels) == 7
    assert all(name.startswith("_relation_") for name in kernels), kernels
