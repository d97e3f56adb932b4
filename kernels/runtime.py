"""Which implementation serves a call: compiled Triton, interpreted Triton, or the reference.

- :data:`HAS_TRITON`: triton is importable (an optional dependency, ``pip install rdcl[triton]``).
- :data:`INTERPRETING`: Triton runs the kernels in its CPU interpreter in this process.
- :func:`use_triton`: the Triton path serves these tensors (CUDA, or CPU when interpreting).

The mode is chosen once per process, when this module is imported: ``TRITON_INTERPRET`` true
then means the interpreter for the life of the process, and a later change of the variable has
no effect. It is read through Triton (``triton.knobs.runtime.interpret``), as ``@triton.jit``
reads it when it decorates a kernel, and :mod:`rdcl.kernels.ops` imports (decorates) the kernel
modules right after this module, so the two always agree. To run the kernels both ways, use two
processes (the kernel tests run their interpreter tests in a child process:
``tests/kernels/conftest.py``).

This module imports no rdcl kernel code, so ``rdcl.kernels`` imports (and serves the reference
path) where triton is absent.
"""

from __future__ import annotations

import torch

try:
    import triton

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton is an optional dependency
    HAS_TRITON = False

INTERPRETING = HAS_TRITON and bool(triton.knobs.runtime.interpret)
"""True when this process runs the Triton kernels in the CPU interpreter: ``TRITON_INTERPRET``
was true, as Triton reads it (``1``, ``true``, ``on``, ``yes``), when :mod:`rdcl.kernels` was
first imported. False without triton."""


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the Triton path serves these tensors (CUDA, or CPU under the interpreter)."""
    if not HAS_TRITON:
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return all(t.device.type == "cpu" for t in tensors) and INTERPRETING


__all__ = ["HAS_TRITON", "INTERPRETING", "use_triton"]
