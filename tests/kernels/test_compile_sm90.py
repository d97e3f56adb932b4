"""Compile every relation kernel for sm_90 (H100) without a GPU, so GPU-only errors show in CI.

Triton lowers to PTX and assembles a cubin with its bundled ptxas for an explicit target; no
driver is needed. Each case is the configuration the launchers pick on a GPU for the shapes of
the paper (fp32 with 3xtf32 products, multi-tile C = 320, single-tile C = 32) plus bf16 input,
each compiled twice: with 32-bit integer arguments, and with every integer argument 64-bit (what
Triton passes for a size, stride or offset >= 2^31, e.g. features (3, 16, 300, 512, 512)).
"""

from __future__ import annotations

import pytest
import triton.language as tl
from rdcl.kernels import ops

triton = pytest.importorskip("triton")
compiler = pytest.importorskip("triton.compiler")
backend = pytest.importorskip("triton.backends.compiler")
pytest.importorskip("triton.backends.nvidia", reason="triton was built without the CUDA backend")

F32 = tl.float32
ROW = dict(BLOCK_R=8, BLOCK_W=512, ACC=F32)
FLOORED = dict(ROW, FLOOR=1e-3, EPS=1e-12)
CASES = [
    ("relation", "_relation_fwd_gram_kernel", "*fp32",
     dict(PER_SAMPLE=False, BLOCK_C=64, BLOCK_K=128, SINGLE=False, ACC=F32, PRECISION="tf32x3")),
    ("relation", "_relation_fwd_gram_kernel", "*bf16",
     dict(PER_SAMPLE=True, BLOCK_C=32, BLOCK_K=256, SINGLE=True, ACC=F32, PRECISION="ieee")),
    ("relation", "_relation_fwd_kernel", "*fp32", ROW),
    ("relation", "_relation_norm_kernel", "*fp32", FLOORED),
    ("relation", "_relation_bwd_kernel", "*fp32", FLOORED),
    ("relation", "_relation_bwd_feat_kernel", "*fp32",
     dict(PER_SAMPLE=False, BLOCK_I=64, BLOCK_N=128, ACC=F32, PRECISION="tf32x3")),
    ("relation_loss", "_relation_loss_fwd_kernel", "*fp32", FLOORED),
    ("relation_loss", "_relation_loss_bwd_kernel", "*fp32", FLOORED),
]  # fmt: skip


@pytest.mark.parametrize("int_type", ["i32", "i64"])
@pytest.mark.parametrize(("module", "name", "ptr", "constexprs"), CASES)
def test_kernel_compiles_for_sm90(monkeypatch, module, name, ptr, constexprs, int_type) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    relation, relation_loss = ops.kernel_modules()
    fn = getattr({"relation": relation, "relation_loss": relation_loss}[module], name)
    assert isinstance(fn, triton.runtime.jit.JITFunction)
    signature = {a: (ptr if a.endswith("_ptr") else int_type) for a in fn.arg_names}
    signature.update({k: "constexpr" for k in constexprs})
    assert set(signature) == set(fn.arg_names)
    kernel = triton.compile(
        compiler.ASTSource(fn, signature, constexprs), target=backend.GPUTarget("cuda", 90, 32)
    )
    assert kernel.asm["cubin"], f"{name}: no cubin"
    assert kernel.metadata.shared <= 227 * 1024, f"{name}: {kernel.metadata.shared} B shared"
