"""The one place that loads the compiled surface engine (``rdcl._surface``) and says which runs.

``HAVE_EXTENSION`` tells whether the C++ module imported; ``CUDA_BUILT`` whether it contains the
CUDA implementation; :func:`engine` names the engine a call will use; :func:`import_error` is why
the module did not import. Without the module rdcl falls back to the numpy reference and warns once
(with the import error) at the first metric computed. With the environment variable
``RDCL_REQUIRE_ENGINE`` set (``1`` or ``cpp``: the C++ module must import; ``cuda``: it must also
contain CUDA) the fallback is an ImportError at import time instead: CI sets it so that a build
whose engine is missing or broken fails rather than passing on the reference.
:func:`require_cuda` raises the one error for CUDA requests it cannot serve.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Any

from rdcl.errors import RdclInputError

REQUIRE_ENV = "RDCL_REQUIRE_ENGINE"

_BUILD_HINT = (
    "rebuild rdcl with its compiled parts: `pip install --no-build-isolation -e .` "
    "(CUDA needs nvcc on PATH at build time)"
)

_import_error: str | None
try:
    from rdcl import _surface as _ext
except ImportError as exc:  # the package still works through the numpy reference
    _ext = None
    _import_error = f"{type(exc).__name__}: {exc}"
else:
    _import_error = None

HAVE_EXTENSION: bool = _ext is not None
CUDA_BUILT: bool = bool(_ext is not None and _ext.cuda_built())
_warned = False


def _check_required() -> None:
    required = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if required in ("", "0"):
        return
    if required not in ("1", "cpp", "cuda"):
        raise ImportError(f"expected {REQUIRE_ENV} to be 0, 1, cpp or cuda, found {required!r}")
    if _ext is None:
        raise ImportError(
            f"{REQUIRE_ENV}={required} but the compiled engine rdcl._surface did not import "
            f"({_import_error}); {_BUILD_HINT}"
        )
    if required == "cuda" and not CUDA_BUILT:
        raise ImportError(f"{REQUIRE_ENV}=cuda but rdcl._surface was built without CUDA")


_check_required()


def extension() -> ModuleType | None:
    """The compiled module, or None when it is not built (warns once, with the import error)."""
    global _warned
    if _ext is None and not _warned:
        _warned = True
        warnings.warn(
            f"rdcl._surface did not import ({_import_error}); surface metrics use the numpy "
            f"reference (same values, much slower); {_BUILD_HINT}",
            RuntimeWarning,
            stacklevel=3,
        )
    return _ext


def import_error() -> str | None:
    """Why ``rdcl._surface`` did not import ("ExcType: message"), or None when it did."""
    return _import_error


def engine(device: str = "cpu") -> str:
    """The engine that computes surface distances for ``device`` ("cpu" or "cuda").

    "cpp" (the compiled multithreaded engine), "numpy-reference" (the fallback without it) or, for
    "cuda", "cuda" when the CUDA engine is built and torch sees a GPU, else "unavailable".
    """
    kind = str(device).split(":")[0]
    if kind == "cpu":
        return "cpp" if _ext is not None else "numpy-reference"
    if kind != "cuda":
        raise RdclInputError(f"expected device 'cpu' or 'cuda', found {device!r}")
    try:
        require_cuda()
    except ImportError:
        return "unavailable"
    return "cuda"


def require_cuda(device: Any = None) -> ModuleType:
    """The compiled module when CUDA can run; raises ImportError saying what is missing otherwise.

    Missing: the compiled module, its CUDA part, a torch built with CUDA, a visible GPU, or the
    requested device index (``device`` like "cuda:1").
    """
    if _ext is None:
        raise ImportError(
            f"the CUDA surface engine needs the compiled rdcl._surface ({_import_error}); "
            f"{_BUILD_HINT}"
        )
    if not _ext.cuda_built():
        raise ImportError(f"rdcl._surface was built without CUDA; {_BUILD_HINT}")
    import torch

    if not torch.backends.cuda.is_built():
        raise ImportError(
            f"device='cuda' needs a torch built with CUDA, found torch {torch.__version__} "
            "(CPU only)"
        )
    if not torch.cuda.is_available():
        raise ImportError("device='cuda' needs a visible CUDA GPU, found none")
    index = torch.device(device).index if device is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise ImportError(
            f"device={str(device)!r} is not present: torch sees {torch.cuda.device_count()} GPU(s)"
        )
    return _ext
