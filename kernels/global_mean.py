"""Relation matrix over the global batch under ``torch.distributed``.

With a process group of world size W > 1, the batch mean covers every rank's samples:

    A = (sum_r sum_{b in rank r} F_b) / (sum_r B_r)

The mean features (C, N) are all-reduced (not the Gram: the Gram of a mean is not the mean of the
Grams), then every rank computes the same G = A A^T and R. In backward, dL/dG (C, C, small) is
all-reduced, which is exactly the backward of the forward all-reduce because A is identical on every
rank: sum_r (dG_r + dG_r^T) A = (S + S^T) A with S = sum_r dG_r. Each rank then gets
dF_b = (S + S^T) A / sum_r B_r for its own samples.

Gradient convention: the gradients are those of the SUM of the ranks' losses (as for any
all-reduce), so DDP's average over ranks yields the gradient of the (identical) global loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .ops import _gram_norms
from .reference import acc_dtype, normalize_rows, relation_matrix_reference
from .runtime import HAS_TRITON, use_triton

if HAS_TRITON:
    from . import gram_backward, gram_forward


def distributed_active(group: dist.ProcessGroup | None = None) -> bool:
    """True when torch.distributed is initialised with more than one rank in ``group``."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


class _GlobalRelation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        x = features.reshape(features.shape[0], features.shape[1], -1)
        acc = acc_dtype(x.dtype)
        total = x.to(acc).sum(dim=0)
        count = torch.tensor(float(x.shape[0]), dtype=acc, device=x.device)
        dist.all_reduce(total, group=group)
        dist.all_reduce(count, group=group)
        a = (total / count).unsqueeze(0)
        if use_triton(a):
            r, norms = gram_forward.relation_forward(a, "mean")
        else:
            r, norms = relation_matrix_reference(a), _gram_norms(a, False)
        ctx.save_for_backward(a, r, norms, count)
        ctx.group = group
        ctx.local_shape = features.shape
        ctx.local_dtype = features.dtype
        return r

    @staticmethod
    def backward(ctx, grad_r: torch.Tensor) -> tuple[torch.Tensor, None]:
        a, r, norms, count = ctx.saved_tensors
        if use_triton(a):
            grad_g = gram_backward.gram_grad(grad_r, r, norms)
        else:
            with torch.enable_grad():
                gram = (a[0] @ a[0].T).requires_grad_(True)
                rr = normalize_rows(gram)
                (grad_g,) = torch.autograd.grad(rr, gram, grad_r.to(gram.dtype))
        grad_g = grad_g.contiguous()
        dist.all_reduce(grad_g, group=ctx.group)
        if use_triton(a):
            grad_a = gram_backward.gram_grad_to_features(grad_g, a, "mean")[0]
        else:
            grad_a = (grad_g + grad_g.T) @ a[0]
        b, c = ctx.local_shape[0], ctx.local_shape[1]
        grad = (grad_a / count).to(ctx.local_dtype).expand(b, c, grad_a.shape[-1])
        return grad.reshape(ctx.local_shape), None


def global_relation_matrix(
    features: torch.Tensor, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Batch-mean relation matrix (C, C) of the global batch (see the module docstring).

    Args:
        features: this rank's (B_r, C, *spatial) features; every rank must call with the same C
            and spatial size (collective call).
        group: process group (default: the world).
    """
    if features.dim() < 2:
        raise ValueError(
            f"features must be (B, C, *spatial) with at least 2 dims, found shape "
            f"{tuple(features.shape)}"
        )
    return _GlobalRelation.apply(features, group)


def global_relation_losses(
    g_noncovid: torch.Tensor,
    g_covid: torch.Tensor,
    t_covid: torch.Tensor,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_g, d_t) of the global-batch relation matrices: squared Frobenius norms (sums over the
    C x C entries) with the detach routing of
    :func:`rdcl.kernels.reference.relation_losses_reference`."""
    r_gn = global_relation_matrix(g_noncovid, group)
    r_gc = global_relation_matrix(g_covid, group)
    r_tc = global_relation_matrix(t_covid, group)
    if not (r_gn.shape == r_gc.shape == r_tc.shape):
        raise ValueError(
            f"all three feature maps need the same channel count, found "
            f"{g_noncovid.shape[1]}, {g_covid.shape[1]}, {t_covid.shape[1]}"
        )
    return (r_gn - r_gc).pow(2).sum(), (r_gc.detach() - r_tc).pow(2).sum()
