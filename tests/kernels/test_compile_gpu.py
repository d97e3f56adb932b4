"""Compile every relation kernel for sm_80 (A100) and sm_90 (H100) without a GPU, so GPU-only
errors show in CI.

Triton lowers to PTX and assembles a cubin with its bundled ptxas for an explicit target; no
driver is needed. Each case is the configuration the launchers pick on a GPU for the shapes of
the paper (fp32 with 3xtf32 products, multi-tile C = 320, single-tile C = 32) plus bf16 input
with strided N, each compiled for both targets twice: with 32-bit integer arguments, and with every
integer argument 64-bit (what Triton passes for a value >= 2^31). Sizes, strides and addresses of
the features come from the int64 matrix table (``rdcl.kernels.launch``), so they are 64-bit always.
"""

from __future__ import annotations

import importlib

import pytest

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
compiler = pytest.importorskip("triton.compiler")
backend = pytest.importorskip("triton.backends.compiler")
pytest.importorskip("triton.backends.nvidia", reason="triton was built without the CUDA backend")

F32 = tl.float32
ROW = dict(BLOCK_R=8, BLOCK_W=512, ACC=F32)
FLOORED = dict(ROW, FLOOR=1e-3, EPS=1e-12)
# (module, kernel, type of the *_ptr arguments except the int64 matrix table, constexprs)
CASES = [
    ("gram_forward", "_relation_gram_kernel", "*fp32",
     dict(DTYPE=F32, UNIT_N=True, ALIGNED=True, N16=True, BLOCK_C=64, BLOCK_K=128, SINGLE=False,
          ACC=F32, PRECISION="tf32x3")),
    ("gram_forward", "_relation_gram_kernel", "*fp32",
     dict(DTYPE=tl.bfloat16, UNIT_N=False, ALIGNED=False, N16=False, BLOCK_C=32, BLOCK_K=256,
          SINGLE=True, ACC=F32, PRECISION="ieee")),
    ("gram_forward", "_relation_split_sum_kernel", "*fp32", ROW),
    ("gram_forward", "_relation_normalize_kernel", "*fp32", FLOORED),
    ("gram_backward", "_relation_gram_grad_kernel", "*fp32", FLOORED),
    ("gram_backward", "_relation_features_grad_kernel", "*fp32",
     dict(DTYPE=F32, UNIT_N=True, ALIGNED=True, N16=True, BLOCK_I=64, BLOCK_N=128, ACC=F32,
          PRECISION="tf32x3")),
    ("gram_backward", "_relation_features_grad_kernel", "*fp32",
     dict(DTYPE=tl.bfloat16, UNIT_N=False, ALIGNED=False, N16=False, BLOCK_I=32, BLOCK_N=256,
          ACC=F32, PRECISION="ieee")),
    ("relation_loss", "_relation_loss_fwd_kernel", "*fp32", FLOORED),
    ("relation_loss", "_relation_loss_bwd_kernel", "*fp32", FLOORED),
]  # fmt: skip


# Shared memory a block may use: sm_80 (A100) 163 KiB, sm_90 (H100) 227 KiB (opt-in maxima).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


@pytest.mark.parametrize("arch", sorted(SHARED_LIMIT))
@pytest.mark.parametrize("int_type", ["i32", "i64"])
@pytest.mark.parametrize(("module", "name", "ptr", "constexprs"), CASES)
def test_kernel_compiles(compiled, module, name, ptr, constexprs, int_type, arch) -> None:
    fn = getattr(importlib.import_module(f"rdcl.kernels.{module}"), name)
    assert isinstance(fn, triton.runtime.jit.JITFunction)
    signature = {
        a: ("*i64" if a == "table_ptr" else ptr if a.endswith("_ptr") else int_type)
        for a in fn.arg_names
    }
    signature.update({k: "constexpr" for k in constexprs})
    assert set(signature) == set(fn.arg_names)
    kernel = _compile(fn, signature, constexprs, arch=arch)
    assert kernel.asm["cubin"], f"{name}: no cubin"
    assert f".target sm_{arch}" in kernel.asm["ptx"], f"{name}: not compiled for sm_{arch}"
    shared = kernel.metadata.shared
    assert shared <= SHARED_LIMIT[arch], f"{name}: {shared} B shared on sm_{arch}"


def _compile(fn, signature: dict, constexprs: dict, aligned: tuple[str, ...] = (), arch: int = 90):
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in aligned}
    source = compiler.ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=backend.GPUTarget("cuda", arch, 32))


@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=["gram", "features_grad"])
def test_table_hints_keep_feature_loads_vectorised(compiled, case) -> None:
    # Values read from the matrix table carry none of the facts Triton's argument
    # specialisation gives the compiler; without the ALIGNED / N16 hints every feature load was
    # scalar (ld.global.b32) where the scalar-argument kernels had 128-bit loads (v4).
    module, name, ptr, constexprs = case
    fn = getattr(importlib.import_module(f"rdcl.kernels.{module}"), name)
    signature = {a: ("*i64" if a == "table_ptr" else ptr if a.endswith("_ptr") else "i32")
                 for a in fn.arg_names}  # fmt: skip
    signature.update({k: "constexpr" for k in constexprs})
    aligned = tuple(a for a in fn.arg_names if a.endswith("_ptr") or a == "C")
    ptx = {}
    for hints in (True, False):
        flags = dict(constexprs, ALIGNED=hints, N16=hints)
        ptx[hints] = _compile(fn, signature, flags, aligned).asm["ptx"]
    vector_loads = {h: text.count("ld.global.v4.b32") for h, text in ptx.items()}
    # measured: gram 32 vs 0, features_grad 36 vs 4 (the dG tile); the pre-table kernels had 32, 36
    assert vector_loads[True] >= 32 > vector_loads[False], vector_loads
