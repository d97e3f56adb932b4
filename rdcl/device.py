"""Device names: the one place where ``"auto"``, ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` become a
:class:`torch.device`, checked against this machine before any work starts."""

from __future__ import annotations

import torch

from rdcl.errors import RdclInputError

__all__ = ["DEVICE_NAMES", "resolve_device"]

DEVICE_NAMES = "cpu, cuda, cuda:N or auto"
"""The accepted device names, as error messages list them."""


def resolve_device(device: str | torch.device) -> torch.device:
    """The :class:`torch.device` for ``device``: ``"auto"`` -> CUDA when available, else CPU;
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a ``torch.device``) as given once checked.

    Raises:
        RdclInputError: any other name or device type, a CUDA device on a machine without one,
            or a CUDA index at or beyond the number of GPUs (instead of torch's traceback at the
            first tensor moved there).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise RdclInputError(f"expected a device {DEVICE_NAMES}, found {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise RdclInputError(f"expected a device {DEVICE_NAMES}, found {str(device)!r}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RdclInputError(
                f"device {str(device)!r} requested but no CUDA GPU is available; "
                "expected cpu or auto"
            )
        if dev.index is not None and dev.index >= count:
            raise RdclInputError(
                f"device {str(device)!r}: expected a CUDA index below {count}, found {dev.index}"
            )
    return dev
