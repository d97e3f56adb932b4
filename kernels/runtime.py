"""Which implementation serves a call: compiled Triton, interpreted Triton, or the reference.

- :data:`HAS_TRITON`: triton is importable (an optional dependency, ``pip install rdcl[triton]``).
- :func:`interpreting`: ``TRITON_INTERPRET`` is set now (Triton runs kernels on the CPU).
- :func:`use_triton`: the Triton path serves these tensors now (CUDA, or CPU when interpreting).
- :func:`kernel_modules`: the kernel modules, decorated for the current mode.

This module imports no Triton code at import time, so ``rdcl.kernels`` imports (and serves the
reference path) where triton is absent.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NamedTuple

import torch

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton is an optional dependency
    HAS_TRITON = False


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET`` set, read now)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the Triton path serves these tensors now (CUDA, or CPU under the interpreter)."""
    if not HAS_TRITON:
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return all(t.device.type == "cpu" for t in tensors) and interpreting()


class KernelModules(NamedTuple):
    """The launcher modules of the Triton path (see ``docs/kernels.md``)."""

    gram_forward: ModuleType
    """:mod:`rdcl.kernels.gram_forward`: ``relation_forward``, ``gram_partials``."""
    gram_backward: ModuleType
    """:mod:`rdcl.kernels.gram_backward`: ``relation_backward``, ``gram_grad`` and friends."""
    relation_loss: ModuleType
    """:mod:`rdcl.kernels.relation_loss`: ``relation_loss_forward`` / ``relation_loss_backward``."""


# Every module that defines an @triton.jit function or imports one by name, in import order (a
# module's `from .x import f` binds the f of x's last execution, so x is reloaded first).
_KERNEL_MODULES = ("jit_helpers", "gram_forward", "gram_backward", "relation_loss")
_current: tuple[bool, KernelModules] | None = None  # (interpreting, modules) of the last call


def _decorated_for_now(module: ModuleType) -> bool:
    """True when the Triton functions ``module`` defines match :func:`interpreting` now."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    want = interpreting()
    return all(
        isinstance(value, InterpretedFunction) == want
        for value in vars(module).values()
        if isinstance(value, (JITFunction, InterpretedFunction))
        and value.fn.__module__ == module.__name__
    )


def kernel_modules() -> KernelModules:
    """The kernel modules, decorated for the current ``TRITON_INTERPRET`` mode.

    Why a reload: ``@triton.jit`` chooses between the interpreter (``InterpretedFunction``) and
    the compiler (``JITFunction``) once, when the decorator runs, from ``TRITON_INTERPRET`` at
    that moment. The ops read the flag at every call (so the tests can switch one process between
    the reference, the interpreter and the sm_90 compiler with ``monkeypatch.setenv``); when the
    flag no longer matches the mode the kernels were decorated in, the kernel modules are
    re-executed (``importlib.reload``) in dependency order. In a process that never changes the
    flag (training, benchmarks) the kernels are decorated once and a call costs one environment
    read.
    The kernels therefore call only Triton builtins and our own helpers, never triton.language's
    ``@jit`` functions (``tl.sum``, ``tl.cdiv``), which triton decorated once at its import.

    Raises:
        ImportError: triton is not installed (``pip install rdcl[triton]``).
    """
    global _current
    if not HAS_TRITON:
        raise ImportError("the relation kernels need triton: pip install 'triton>=3.8'")
    want = interpreting()
    if _current is not None and _current[0] == want:
        return _current[1]
    from . import gram_backward, gram_forward, jit_helpers, relation_loss

    modules = {
        "jit_helpers": jit_helpers,
        "gram_forward": gram_forward,
        "gram_backward": gram_backward,
        "relation_loss": relation_loss,
    }
    stale = [name for name in _KERNEL_MODULES if not _decorated_for_now(modules[name])]
    if stale:
        first = _KERNEL_MODULES.index(stale[0])
        for name in _KERNEL_MODULES[first:]:
            modules[name] = importlib.reload(modules[name])
    _current = (want, KernelModules(*(modules[name] for name in KernelModules._fields)))
    return _current[1]


__all__ = ["HAS_TRITON", "KernelModules", "interpreting", "kernel_modules", "use_triton"]
