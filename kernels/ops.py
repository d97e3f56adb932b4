"""``torch.library`` custom ops for the relation matrix and the relation losses.

Ops (namespace ``rdcl``), each with a fake (meta) implementation and autograd:

- ``rdcl::relation_matrix(features, per_sample) -> (R, row_norms)``
- ``rdcl::relation_matrix_backward(grad_r, features, r, row_norms, per_sample) -> grad_features``
- ``rdcl::relation_losses(g_noncovid, g_covid, t_covid) -> (losses (2,), r (3, C, C), norms)``
- ``rdcl::relation_losses_backward(grad_losses, g_noncovid, g_covid, t_covid, r, norms) -> 3 grads``

Dispatch happens at call time, inside each op (:func:`rdcl.kernels.runtime.use_triton`): the
Triton kernels for CUDA tensors, and for CPU tensors in a process that runs Triton's interpreter
(``TRITON_INTERPRET=1`` when rdcl was imported, :data:`rdcl.kernels.runtime.INTERPRETING`); the
pure-PyTorch reference otherwise (the reference is the CPU implementation, with its closed-form
backward). The kernel modules are imported here, once, where triton is installed.
"""

from __future__ import annotations

import torch

from .reference import (
    EPS,
    acc_dtype,
    relation_losses_backward_reference,
    relation_losses_reference,
    relation_matrix_backward_reference,
    relation_matrix_reference,
)
from .runtime import HAS_TRITON, INTERPRETING, use_triton

if HAS_TRITON:  # decorated now, in the mode runtime chose (compiler or interpreter)
    from . import gram_backward, gram_forward, relation_loss


def _gram_norms(features: torch.Tensor, per_sample: bool) -> torch.Tensor:
    a = features.reshape(features.shape[0], features.shape[1], -1).to(acc_dtype(features.dtype))
    if not per_sample:
        a = a.mean(dim=0, keepdim=True)
    norms = torch.linalg.vector_norm(a @ a.transpose(1, 2), dim=-1)
    return norms if per_sample else norms[0]


@torch.library.custom_op("rdcl::relation_matrix", mutates_args=())
def relation_matrix_op(
    features: torch.Tensor, per_sample: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, unclamped Gram row norms); R is (C, C), or (B, C, C) when ``per_sample``."""
    reduce = None if per_sample else "mean"
    if use_triton(features):
        return gram_forward.relation_forward(features, reduce)
    r = relation_matrix_reference(features, reduce)
    return r, _gram_norms(features, per_sample)


@relation_matrix_op.register_fake
def _(features: torch.Tensor, per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = features.shape[0], features.shape[1]
    lead = (b,) if per_sample else ()
    dtype = acc_dtype(features.dtype)
    return features.new_empty((*lead, c, c), dtype=dtype), features.new_empty(
        (*lead, c), dtype=dtype
    )


@torch.library.custom_op("rdcl::relation_matrix_backward", mutates_args=())
def relation_matrix_backward_op(
    grad_r: torch.Tensor,
    features: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    per_sample: bool,
) -> torch.Tensor:
    """dL/dfeatures (shape and dtype of ``features``) from dL/dR."""
    reduce = None if per_sample else "mean"
    if use_triton(features):
        return gram_backward.relation_backward(grad_r, features, r, norms, reduce)
    return relation_matrix_backward_reference(grad_r, features, r, norms, reduce)


@relation_matrix_backward_op.register_fake
def _(grad_r, features, r, norms, per_sample):
    return torch.empty_like(features, memory_format=torch.contiguous_format)


def _setup_relation(ctx, inputs, output) -> None:
    features, per_sample = inputs
    r, norms = output
    ctx.save_for_backward(features, r, norms)
    ctx.per_sample = per_sample


def _backward_relation(ctx, grad_r, grad_norms):
    features, r, norms = ctx.saved_tensors
    if grad_r is None:
        grad_r = torch.zeros_like(r)
    return relation_matrix_backward_op(grad_r, features, r, norms, ctx.per_sample), None


relation_matrix_op.register_autograd(_backward_relation, setup_context=_setup_relation)


@torch.library.custom_op("rdcl::relation_losses", mutates_args=())
def relation_losses_op(
    g_noncovid: torch.Tensor, g_covid: torch.Tensor, t_covid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """((d_g, d_t) squared Frobenius norms as a (2,) tensor, R (3, C, C), row norms (3, C))."""
    if use_triton(g_noncovid, g_covid, t_covid):
        return relation_loss.relation_loss_forward(g_noncovid, g_covid, t_covid)
    d_g, d_t = relation_losses_reference(g_noncovid, g_covid, t_covid)
    feats = (g_noncovid, g_covid, t_covid)
    dtype = d_g.dtype
    r = torch.stack([relation_matrix_reference(x).to(dtype) for x in feats])
    norms = torch.stack([_gram_norms(x, False).to(dtype) for x in feats])
    return torch.stack([d_g, d_t]), r, norms


@relation_losses_op.register_fake
def _(g_noncovid, g_covid, t_covid):
    if not (g_noncovid.shape[1] == g_covid.shape[1] == t_covid.shape[1]):
        raise ValueError(
            f"all three feature maps need the same channel count, found "
            f"{g_noncovid.shape[1]}, {g_covid.shape[1]}, {t_covid.shape[1]}"
        )
    c = g_noncovid.shape[1]
    dtype = torch.promote_types(torch.promote_types(g_noncovid.dtype, g_covid.dtype), t_covid.dtype)
    dtype = acc_dtype(dtype)
    return (
        g_noncovid.new_empty((2,), dtype=dtype),
        g_noncovid.new_empty((3, c, c), dtype=dtype),
        g_noncovid.new_empty((3, c), dtype=dtype),
    )


@torch.library.custom_op("rdcl::relation_losses_backward", mutates_args=())
def relation_losses_backward_op(
    grad_losses: torch.Tensor,
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of grad_losses[0] * d_g + grad_losses[1] * d_t for the three inputs."""
    feats = (g_noncovid, g_covid, t_covid)
    if use_triton(*feats):
        return relation_loss.relation_loss_backward(grad_losses, *feats, r, norms)
    return relation_losses_backward_reference(grad_losses, feats, r, norms)


@relation_losses_backward_op.register_fake
def _(grad_losses, g_noncovid, g_covid, t_covid, r, norms):
    return tuple(
        torch.empty_like(x, memory_format=torch.contiguous_format)
        for x in (g_noncovid, g_covid, t_covid)
    )


def _setup_losses(ctx, inputs, output) -> None:
    _, r, norms = output
    ctx.save_for_backward(*inputs, r, norms)


def _backward_losses(ctx, grad_losses, grad_r, grad_norms):
    g_noncovid, g_covid, t_covid, r, norms = ctx.saved_tensors
    if grad_losses is None:
        grad_losses = torch.zeros(2, dtype=r.dtype, device=r.device)
    return relation_losses_backward_op(grad_losses, g_noncovid, g_covid, t_covid, r, norms)


relation_losses_op.register_autograd(_backward_losses, setup_context=_setup_losses)

__all__ = [
    "EPS",
    "HAS_TRITON",
    "INTERPRETING",
    "relation_losses_backward_op",
    "relation_losses_op",
    "relation_matrix_backward_op",
    "relation_matrix_op",
    "use_triton",
]
