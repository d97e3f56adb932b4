"""Triton kernels for the relation matrix: channel Gram with row-L2 normalisation.

Forward, for features F of shape (B, C, N) (spatial axes flattened):

    A = mean_b F_b                     (reduce="mean"; per-sample: A_b = F_b)
    G = A A^T                          (C, C), split-K over N, partials summed in a fixed order
    R_i = G_i / max(||G_i||, f)        (row i; f = max(ROW_FLOOR * max_j ||G_j||, EPS) per matrix)

Backward, for dR (f is a constant, as in the reference):

    dG_i = (dR_i - R_i <R_i, dR_i>) / ||G_i||   (dR_i / f where ||G_i|| < f)
    dA = (dG + dG^T) A,    dF_b = dA / B  (per-sample: dF_b = dA_b)

Launches: forward = split-K partial Gram + split reduction (G, row norms) + normalisation (the
floor needs every row norm of the matrix first); backward = dG + dF. Every offset that scales with
B, N or the split count is computed in int64 (a (3, 16, 300, 512, 512) input has B*C*N > 2^31).
The batch mean is fused into every load of F (it is never materialised), accumulation is fp32
(fp64 for fp64 input), and fp32 products use ``ieee`` or the 3xtf32 scheme (``"tf32x3"``), never
plain tf32. Block sizes are chosen in Python (``@triton.autotune`` does not run under
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .reference import EPS, ROW_FLOOR

_TORCH_TO_TL = {torch.float32: tl.float32, torch.float64: tl.float64}


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``, read now)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _add(x, y):
    return x + y


# Kernels only use Triton builtins, never triton.language's own @jit helpers (tl.sum, tl.cdiv,
# tl.zeros): those are decorated once, when triton is imported, for the interpreter or the
# compiler, while this module is re-decorated when TRITON_INTERPRET changes (ops.kernel_modules).
# The interpreter recognises its own sum combiner and reduces with numpy; the compiler gets ours.
_SUM = tl.standard._sum_combine if interpreting() else _add


@triton.jit
def _max2(x, y):
    return tl.maximum(x, y)


_MAX = tl.standard._elementwise_max if interpreting() else _max2


@triton.jit
def _i64(x):
    """``x`` as an int64 scalar (loop counters and program ids are int32)."""
    return tl.cast(x, tl.int64)


@triton.jit
def _row_sum(x):
    """Sum over axis 1 of a 2D tile."""
    return tl.reduce(x, 1, _SUM)


@triton.jit
def _load_mean_tile(x_ptr, rows, cols, NB, C, N, sb, sc, sn, ACC: tl.constexpr):
    """Load F[:, rows, cols] and average over the NB samples: a (len(rows), len(cols)) tile."""
    mask = (rows[:, None] < C) & (cols[None, :] < N)
    ptrs = x_ptr + rows[:, None].to(tl.int64) * sc + cols[None, :].to(tl.int64) * sn
    a = tl.load(ptrs, mask=mask, other=0.0).to(ACC)
    for b in range(1, NB):
        a += tl.load(ptrs + _i64(b) * sb, mask=mask, other=0.0).to(ACC)
    return a / NB


@triton.jit
def _gram_partial(x_ptr, part_ptr, NB, C, N, sb, sc, sn, tile, split, SPLITS,
                  BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, SINGLE: tl.constexpr,
                  ACC: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """Partial Gram tile (rows block i, cols block j) over split ``split`` of N into part[split].

    SINGLE (C <= BLOCK_C): one tile holds every channel, so A is loaded once per K step.
    """
    nbc = (C + BLOCK_C - 1) // BLOCK_C
    ri = (tile // nbc) * BLOCK_C + tl.arange(0, BLOCK_C)
    rj = (tile % nbc) * BLOCK_C + tl.arange(0, BLOCK_C)
    chunk = ((N + SPLITS - 1) // SPLITS + BLOCK_K - 1) // BLOCK_K * BLOCK_K
    k0 = split * chunk
    k1 = tl.minimum(k0 + chunk, N)
    acc = tl.full((BLOCK_C, BLOCK_C), 0.0, ACC)
    for k in range(k0, k1, BLOCK_K):
        cols = k + tl.arange(0, BLOCK_K)
        ai = _load_mean_tile(x_ptr, ri, cols, NB, C, k1, sb, sc, sn, ACC)
        if SINGLE:
            aj = ai
        else:
            aj = _load_mean_tile(x_ptr, rj, cols, NB, C, k1, sb, sc, sn, ACC)
        acc = tl.dot(ai, tl.trans(aj), acc, input_precision=PRECISION, out_dtype=ACC)
    mask = (ri[:, None] < C) & (rj[None, :] < C)
    out = part_ptr + (split * C + ri[:, None]).to(tl.int64) * C + rj[None, :]
    tl.store(out, acc, mask=mask)


@triton.jit
def _sum_splits(part_ptr, rows, cols, C, SPLITS, ACC: tl.constexpr):
    """G[rows, cols] = sum_s part[s, rows, cols], summed in split order (deterministic)."""
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    ptrs = part_ptr + rows[:, None].to(tl.int64) * C + cols[None, :]
    g = tl.load(ptrs, mask=mask, other=0.0).to(ACC)
    for s in range(1, SPLITS):
        g += tl.load(ptrs + _i64(s) * C * C, mask=mask, other=0.0)
    return g


@triton.jit
def _row_norms(g):
    """L2 norms of the rows of a 2D tile."""
    return tl.sqrt(_row_sum(g * g))


@triton.jit
def _row_floor(norm_ptr, C, BLOCK_W: tl.constexpr, ACC: tl.constexpr, FLOOR: tl.constexpr,
               EPS: tl.constexpr):  # fmt: skip
    """max(FLOOR * max_j n_j, EPS) over the C row norms at ``norm_ptr`` (a scalar)."""
    cols = tl.arange(0, BLOCK_W)
    norms = tl.load(norm_ptr + cols, mask=cols < C, other=0.0).to(ACC)
    return tl.maximum(FLOOR * tl.reduce(norms, 0, _MAX), EPS)


@triton.jit
def _grad_gram_rows(r, dr, norm, floor):
    """dG rows from dR rows: (dR - R <R, dR>) / ||G|| (dR / floor where ||G|| < floor)."""
    proj = tl.where(norm >= floor, _row_sum(r * dr), 0.0)
    return (dr - r * proj[:, None]) / tl.maximum(norm, floor)[:, None]


@triton.jit
def _feature_grad_tile(x_ptr, dx_ptr, dg_ptr, NB, C, N, sb, sc, sn, pid_i, pid_n,
                       BLOCK_I: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                       PRECISION: tl.constexpr):  # fmt: skip
    """dF_b[rows, cols] = ((dG + dG^T) A)[rows, cols] / NB for each of the NB samples.

    ``dx_ptr`` is a contiguous (NB, C, N) gradient; ``x_ptr`` the (strided) features.
    """
    ri = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.full((BLOCK_I, BLOCK_N), 0.0, ACC)
    for j0 in range(0, C, BLOCK_I):
        rj = j0 + tl.arange(0, BLOCK_I)
        mask = (ri[:, None] < C) & (rj[None, :] < C)
        s = tl.load(dg_ptr + ri[:, None] * C + rj[None, :], mask=mask, other=0.0)
        s += tl.load(dg_ptr + rj[None, :] * C + ri[:, None], mask=mask, other=0.0)
        a = _load_mean_tile(x_ptr, rj, cols, NB, C, N, sb, sc, sn, ACC)
        acc = tl.dot(s, a, acc, input_precision=PRECISION, out_dtype=ACC)
    acc = (acc / NB).to(dx_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
    mask = (ri[:, None] < C) & (cols[None, :] < N)
    out = dx_ptr + ri[:, None].to(tl.int64) * N + cols[None, :]
    for b in range(NB):
        tl.store(out + _i64(b) * C * N, acc, mask=mask)


@triton.jit
def _pick(m, v0, v1, v2):
    """v_m for m in {0, 1, 2} (scalar select, no branching)."""
    return tl.where(m == 0, v0, tl.where(m == 1, v1, v2))


@triton.jit
def _relation_fwd_gram_kernel(x_ptr, part_ptr, xo1, xo2, B0, B1, B2, N0, N1, N2,
                              s0b, s0c, s0n, s1b, s1c, s1n, s2b, s2c, s2n, C, SPLITS,
                              PER_SAMPLE: tl.constexpr, BLOCK_C: tl.constexpr,
                              BLOCK_K: tl.constexpr, SINGLE: tl.constexpr, ACC: tl.constexpr,
                              PRECISION: tl.constexpr):  # fmt: skip
    """Grid (tiles, SPLITS, M): split-K partial Grams of M matrices into part (M, SPLITS, C, C).

    PER_SAMPLE: matrix m is sample m of x (B0 samples). Otherwise matrix m < 3 is the batch mean of
    input m, which starts ``xo_m`` elements after ``x_ptr`` (xo_0 = 0) with B_m, N_m and strides.
    """
    m = _i64(tl.program_id(2))
    if PER_SAMPLE:
        x, nb, n, sb, sc, sn = x_ptr + m * s0b, 1, N0, s0b, s0c, s0n
    else:
        x = x_ptr + _pick(m, 0, xo1, xo2)
        nb, n = _pick(m, B0, B1, B2), _pick(m, N0, N1, N2)
        sb, sc, sn = _pick(m, s0b, s1b, s2b), _pick(m, s0c, s1c, s2c), _pick(m, s0n, s1n, s2n)
    _gram_partial(x, part_ptr + m * SPLITS * C * C, nb, C, n, sb, sc, sn, tl.program_id(0),
                  tl.program_id(1), SPLITS, BLOCK_C, BLOCK_K, SINGLE, ACC, PRECISION)  # fmt: skip


@triton.jit
def _relation_fwd_kernel(part_ptr, r_ptr, norm_ptr, C, SPLITS, BLOCK_R: tl.constexpr,
                         BLOCK_W: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): reduce the splits of full rows; store G (into r) and ||G||."""
    b = _i64(tl.program_id(1))
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    g = _sum_splits(part_ptr + b * SPLITS * C * C, rows, cols, C, SPLITS, ACC)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    tl.store(r_ptr + b * C * C + rows[:, None] * C + cols[None, :], g, mask=mask)
    tl.store(norm_ptr + b * C + rows, _row_norms(g), mask=rows < C)


@triton.jit
def _relation_norm_kernel(r_ptr, norm_ptr, C, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
                          ACC: tl.constexpr, FLOOR: tl.constexpr, EPS: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): R = G / max(||G_i||, floor) in place (G stored in r)."""
    b = _i64(tl.program_id(1))
    floor = _row_floor(norm_ptr + b * C, C, BLOCK_W, ACC, FLOOR, EPS)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    offs = b * C * C + rows[:, None] * C + cols[None, :]
    g = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    norm = tl.load(norm_ptr + b * C + rows, mask=rows < C, other=1.0).to(ACC)
    tl.store(r_ptr + offs, g / tl.maximum(norm, floor)[:, None], mask=mask)


@triton.jit
def _relation_bwd_kernel(r_ptr, dr_ptr, norm_ptr, dg_ptr, C, BLOCK_R: tl.constexpr,
                         BLOCK_W: tl.constexpr, ACC: tl.constexpr, FLOOR: tl.constexpr,
                         EPS: tl.constexpr):  # fmt: skip
    """Grid (row blocks, B_out): dG rows from dR rows (full-width row tiles)."""
    b = _i64(tl.program_id(1))
    floor = _row_floor(norm_ptr + b * C, C, BLOCK_W, ACC, FLOOR, EPS)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < C) & (cols[None, :] < C)
    offs = b * C * C + rows[:, None] * C + cols[None, :]
    r = tl.load(r_ptr + offs, mask=mask, other=0.0).to(ACC)
    dr = tl.load(dr_ptr + offs, mask=mask, other=0.0).to(ACC)
    norm = tl.load(norm_ptr + b * C + rows, mask=rows < C, other=1.0).to(ACC)
    tl.store(dg_ptr + offs, _grad_gram_rows(r, dr, norm, floor), mask=mask)


@triton.jit
def _relation_bwd_feat_kernel(x_ptr, dx_ptr, dg_ptr, xo1, xo2, do1, do2, B0, B1, B2, N0, N1, N2,
                              s0b, s0c, s0n, s1b, s1c, s1n, s2b, s2c, s2n, C,
                              PER_SAMPLE: tl.constexpr, BLOCK_I: tl.constexpr,
                              BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                              PRECISION: tl.constexpr):  # fmt: skip
    """Grid (row blocks, N blocks, M): dF = (dG_m + dG_m^T) A_m / NB_m for M matrices.

    Matrices as in ``_relation_fwd_gram_kernel``; gradient m (contiguous) starts ``do_m`` elements
    after ``dx_ptr``.
    """
    m = _i64(tl.program_id(2))
    if PER_SAMPLE:
        x, dx, nb, n = x_ptr + m * s0b, dx_ptr + m * C * N0, 1, N0
        sb, sc, sn = s0b, s0c, s0n
    else:
        x, dx = x_ptr + _pick(m, 0, xo1, xo2), dx_ptr + _pick(m, 0, do1, do2)
        nb, n = _pick(m, B0, B1, B2), _pick(m, N0, N1, N2)
        sb, sc, sn = _pick(m, s0b, s1b, s2b), _pick(m, s0c, s1c, s2c), _pick(m, s0n, s1n, s2n)
    _feature_grad_tile(x, dx, dg_ptr + m * C * C, nb, C, n, sb, sc, sn, tl.program_id(0),
                       tl.program_id(1), BLOCK_I, BLOCK_N, ACC, PRECISION)  # fmt: skip


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation/output dtype of the relation matrix for input ``dtype``: fp64 or fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_precision(dtype: torch.dtype, precision: str | None) -> str:
    """``tl.dot`` input precision: fp32 uses 3xtf32 on GPU (ieee in the interpreter)."""
    if precision is not None:
        if precision not in ("ieee", "tf32x3"):
            raise ValueError(f"precision must be 'ieee' or 'tf32x3', found {precision!r}")
        return precision
    return "ieee" if dtype == torch.float64 or interpreting() else "tf32x3"


def gram_block(c: int) -> int:
    """Gram / feature-gradient tile edge over channels: 16..64 (tl.dot needs >= 16)."""
    return min(max(triton.next_power_of_2(c), 16), 64)


def row_blocks(c: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_W) for full-width row tiles: BLOCK_W covers all C columns (512 for 320)."""
    width = max(triton.next_power_of_2(c), 16)
    return max(1, min(16, 4096 // width)), width


def choose_splits(c: int, n: int, programs: int, device: torch.device, block_k: int) -> int:
    """Number of split-K chunks so that about 4 programs per SM run (2 in the interpreter)."""
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 2
    return max(1, min(triton.cdiv(n, block_k), target // max(programs, 1)))


def as_bcn(features: torch.Tensor) -> torch.Tensor:
    """View (B, C, *spatial) as (B, C, N) without copying where the strides allow it."""
    if features.dim() < 2:
        raise ValueError(
            f"features must be (B, C, *spatial) with at least 2 dims, found shape "
            f"{tuple(features.shape)}"
        )
    return features.reshape(features.shape[0], features.shape[1], -1)


def _matrix_args(xs: tuple[torch.Tensor, ...], base: torch.Tensor) -> list[int]:
    """Element offsets of xs[1:] from ``base``, then B, N and (sb, sc, sn) of 3 (padded) inputs."""
    xs = xs + (xs[0],) * (3 - len(xs))
    offsets = []
    for x in xs[1:]:
        diff = x.data_ptr() - base.data_ptr()
        if diff % x.element_size():
            raise ValueError(f"tensor offset {diff} B is not a multiple of {x.element_size()} B")
        offsets.append(diff // x.element_size())
    return [*offsets, *(x.shape[0] for x in xs), *(x.shape[2] for x in xs),
            *(st for x in xs for st in x.stride())]  # fmt: skip


def gram_partials(
    xs: tuple[torch.Tensor, ...], per_sample: bool, splits: int | None, precision: str | None
) -> tuple[torch.Tensor, int]:
    """Launch the split-K Gram: per-sample matrices of xs[0], or batch means of 1-3 inputs.

    Args:
        xs: (B_m, C, N_m) views of one dtype.

    Returns:
        partials (M, splits, C, C) in the accumulation dtype, and ``splits``.
    """
    x0 = xs[0]
    c = x0.shape[1]
    m = x0.shape[0] if per_sample else len(xs)
    acc = acc_dtype(x0.dtype)
    block_c = gram_block(c)
    n_max = max(x.shape[2] for x in xs)
    block_k = max(16, min(256, 8192 // block_c, triton.next_power_of_2(n_max)))
    tiles = triton.cdiv(c, block_c) ** 2
    splits = splits or choose_splits(c, n_max, tiles * m, x0.device, block_k)
    part = torch.empty((m, splits, c, c), device=x0.device, dtype=acc)
    _relation_fwd_gram_kernel[(tiles, splits, m)](
        x0, part, *_matrix_args(xs, x0), c, splits, PER_SAMPLE=per_sample, BLOCK_C=block_c,
        BLOCK_K=block_k, SINGLE=c <= block_c, ACC=_TORCH_TO_TL[acc],
        PRECISION=dot_precision(x0.dtype, precision),
    )  # fmt: skip
    return part, splits


def features_grad(
    grad_g: torch.Tensor, xs: tuple[torch.Tensor, ...], per_sample: bool, precision: str | None
) -> tuple[torch.Tensor, ...]:
    """Launch dF = (dG + dG^T) A / NB for the matrices of :func:`gram_partials`.

    Args:
        grad_g: (M, C, C) dL/dG.
        xs: the (B_m, C, N_m) inputs of one dtype.

    Returns:
        one contiguous (B_m, C, N_m) gradient per input, in the input dtype.
    """
    x0 = xs[0]
    c = x0.shape[1]
    acc = acc_dtype(x0.dtype)
    grads = tuple(torch.empty(x.shape, device=x.device, dtype=x.dtype) for x in xs)
    block_i = gram_block(c)
    n_max = max(x.shape[2] for x in xs)
    block_n = max(16, min(256, 8192 // block_i, triton.next_power_of_2(n_max)))
    table = _matrix_args(xs, x0)
    dofs = _matrix_args(grads, grads[0])[:2]
    grid = (triton.cdiv(c, block_i), triton.cdiv(n_max, block_n), grad_g.shape[0])
    _relation_bwd_feat_kernel[grid](
        x0, grads[0], grad_g.to(acc).contiguous(), *table[:2], *dofs, *table[2:], c,
        PER_SAMPLE=per_sample, BLOCK_I=block_i, BLOCK_N=block_n, ACC=_TORCH_TO_TL[acc],
        PRECISION=dot_precision(x0.dtype, precision),
    )  # fmt: skip
    return grads


def relation_forward(
    features: torch.Tensor,
    reduce: str | None = "mean",
    *,
    splits: int | None = None,
    precision: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relation matrix by Triton (3 launches): returns (R, ||G|| row norms).

    Args:
        features: (B, C, *spatial), any float dtype, any strides.
        reduce: ``"mean"`` -> R (C, C) of the batch mean; ``None`` -> (B, C, C) per sample.
        splits: split-K chunk count (default: fill the device); results do not depend on it
            beyond fp32 rounding, and are bitwise deterministic for a fixed value.
        precision: ``"ieee"`` or ``"tf32x3"`` for fp32 products (default: tf32x3 on GPU).

    Returns:
        R (C, C) or (B, C, C) and the unclamped row norms (C,) or (B, C), fp32 (fp64 for fp64).
    """
    x = as_bcn(features)
    c = x.shape[1]
    part, splits = gram_partials((x,), reduce is None, splits, precision)
    m = part.shape[0]
    r = torch.empty((m, c, c), device=x.device, dtype=part.dtype)
    norms = torch.empty((m, c), device=x.device, dtype=part.dtype)
    block_r, block_w = row_blocks(c)
    grid = (triton.cdiv(c, block_r), m)
    acc = _TORCH_TO_TL[part.dtype]
    _relation_fwd_kernel[grid](
        part, r, norms, c, splits, BLOCK_R=block_r, BLOCK_W=block_w, ACC=acc
    )  # fmt: skip
    _relation_norm_kernel[grid](
        r, norms, c, BLOCK_R=block_r, BLOCK_W=block_w, ACC=acc, FLOOR=ROW_FLOOR, EPS=EPS
    )  # fmt: skip
    return (r, norms) if reduce is None else (r[0], norms[0])


def relation_backward(
    grad_r: torch.Tensor,
    features: torch.Tensor,
    r: torch.Tensor,
    norms: torch.Tensor,
    reduce: str | None = "mean",
    *,
    precision: str | None = None,
) -> torch.Tensor:
    """Gradient of the relation matrix w.r.t. the features by Triton (2 launches).

    Args:
        grad_r: dL/dR, same shape as ``r``.
        features: the forward input (B, C, *spatial).
        r, norms: the outputs of :func:`relation_forward`.
        reduce: as in the forward.
        precision: as in :func:`relation_forward`.

    Returns:
        dL/dF with the shape and dtype of ``features`` (contiguous).
    """
    return gram_grad_to_features(gram_grad(grad_r, r, norms), features, reduce, precision=precision)


def gram_grad(grad_r: torch.Tensor, r: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """dL/dG (same shape as ``r``: (C, C) or (B, C, C)) from dL/dR, R and the row norms."""
    c = r.shape[-1]
    r3, n2 = r.reshape(-1, c, c).contiguous(), norms.reshape(-1, c).contiguous()
    dr = grad_r.reshape(-1, c, c).to(r.dtype).contiguous()
    grad_g = torch.empty_like(r3)
    block_r, block_w = row_blocks(c)
    _relation_bwd_kernel[(triton.cdiv(c, block_r), r3.shape[0])](
        r3, dr, n2, grad_g, c, BLOCK_R=block_r, BLOCK_W=block_w, ACC=_TORCH_TO_TL[r.dtype],
        FLOOR=ROW_FLOOR, EPS=EPS,
    )  # fmt: skip
    return grad_g.reshape(r.shape)


def gram_grad_to_features(
    grad_g: torch.Tensor,
    features: torch.Tensor,
    reduce: str | None = "mean",
    *,
    precision: str | None = None,
) -> torch.Tensor:
    """dL/dF from dL/dG (C, C) or (B, C, C): dA = (dG + dG^T) A; dF_b = dA / B or dA_b."""
    x = as_bcn(features)
    c = x.shape[1]
    (grad,) = features_grad(grad_g.reshape(-1, c, c), (x,), reduce is None, precision)
    return grad.reshape(features.shape)
