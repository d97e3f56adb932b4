"""The one place that loads the compiled surface engine (``rdcl._surface``).

``HAVE_EXTENSION`` tells whether the C++ module imported; ``CUDA_BUILT`` whether it contains the
CUDA implementation. :func:`require_cuda` raises the one error for CUDA requests it cannot serve.
"""

from __future__ import annotations

import logging
from types import ModuleType

logger = logging.getLogger(__name__)

_BUILD_HINT = (
    "rebuild rdcl with its compiled parts: `pip install --no-build-isolation -e .` "
    "(CUDA needs nvcc on PATH at build time)"
)

try:
    from rdcl import _surface as _ext
except ImportError as exc:  # the package still works through the numpy reference
    _ext = None
    logger.debug("rdcl._surface not importable (%s); using the numpy reference", exc)

HAVE_EXTENSION: bool = _ext is not None
CUDA_BUILT: bool = bool(_ext is not None and _ext.cuda_built())


def extension() -> ModuleType | None:
    """The compiled module, or None when it is not built."""
    return _ext


def require_cuda() -> ModuleType:
    """The compiled module when it has CUDA; raises ImportError saying how to build it otherwise."""
    if _ext is None:
        raise ImportError(
            f"the CUDA surface engine needs the compiled rdcl._surface; {_BUILD_HINT}"
        )
    if not CUDA_BUILT:
        raise ImportError(f"rdcl._surface was built without CUDA; {_BUILD_HINT}")
    return _ext
