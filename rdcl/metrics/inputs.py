"""Turning user inputs (numpy arrays, torch tensors, label maps) into binary masks and spacings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rdcl.errors import RdclInputError


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def is_cuda(x: Any) -> bool:
    """True for a torch tensor on a CUDA device."""
    return is_torch(x) and x.device.type == "cuda"


def _binary_numpy(x: np.ndarray, label: int | None, name: str) -> np.ndarray:
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.number)):
        raise RdclInputError(
            f"expected {name} to be a bool, integer or float mask, found dtype {x.dtype}"
        )
    if np.issubdtype(x.dtype, np.complexfloating):
        raise RdclInputError(f"expected {name} to be a real-valued mask, found dtype {x.dtype}")
    if label is not None:
        return np.asarray(x == label)
    if x.dtype == np.bool_:
        return x
    if np.issubdtype(x.dtype, np.integer):
        bad = bool((x > 1).any() or (x < 0).any())
    else:
        bad = bool(((x != 0) & (x != 1)).any())
    if bad:
        raise RdclInputError(
            f"expected {name} to be a binary mask (bool or 0/1) or a label map with label=, "
            f"found values outside {{0, 1}} (dtype {x.dtype})"
        )
    return x != 0


def _cpu_tensor_to_numpy(x: Any) -> np.ndarray:
    """A CPU tensor as numpy; dtypes numpy lacks (bfloat16, float8) go through float32 (exact)."""
    x = x.detach()
    try:
        return x.numpy()
    except TypeError:  # e.g. "Got unsupported ScalarType BFloat16"
        import torch

        if x.is_floating_point():
            return x.to(torch.float32).numpy()
        raise RdclInputError(
            f"expected a bool, integer or float mask, found dtype {x.dtype}"
        ) from None


def as_mask(x: Any, *, label: int | None = None, name: str = "mask") -> Any:
    """A C-contiguous bool mask: numpy for numpy/CPU-tensor input, a CUDA tensor for CUDA input.

    x: (z, y, x) or (y, x) bool, 0/1 or label-map array/tensor of any real dtype (bfloat16 and
    float16 tensors included). label: foreground value of a label map. Raises ValueError for
    non-binary input without ``label``, a non-numeric dtype or a bad number of dims.
    """
    if is_torch(x):
        if x.device.type == "cuda":
            if x.is_complex():
                raise RdclInputError(f"expected {name} to be a real-valued mask, found {x.dtype}")
            if label is not None:
                out = x == label
            elif x.dtype == _torch_bool(x):
                out = x
            else:
                if bool(((x != 0) & (x != 1)).any()):
                    raise RdclInputError(
                        f"expected {name} to be a binary mask (bool or 0/1) or a label map with "
                        f"label=, found values outside {{0, 1}} (dtype {x.dtype})"
                    )
                out = x != 0
            _check_dims(out.dim(), name)
            return out.contiguous()
        x = _cpu_tensor_to_numpy(x)
    arr = np.asarray(x)
    _check_dims(arr.ndim, name)
    return np.ascontiguousarray(_binary_numpy(arr, label, name))


def _torch_bool(x: Any) -> Any:
    import torch

    return torch.bool


def _check_dims(ndim: int, name: str) -> None:
    if ndim not in (2, 3):
        raise RdclInputError(f"expected {name} to be 2D (y, x) or 3D (z, y, x), found {ndim}D")


def check_pair(pred: Any, gt: Any) -> None:
    """Raises ValueError when the two masks differ in shape."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise RdclInputError(
            f"expected pred and gt of the same shape, found {tuple(pred.shape)} and "
            f"{tuple(gt.shape)}"
        )


def as_spacing(spacing: Sequence[float] | float | Any, ndim: int) -> tuple[float, ...]:
    """Spacing in mm, one finite positive value per array axis -> tuple of ``ndim`` floats.

    spacing: a number (Python or numpy scalar, 0-d array or tensor: broadcast to every axis) or
    ``ndim`` numbers in array axis order (sequence, 1-D array or tensor). Raises ValueError
    otherwise.
    """
    if isinstance(spacing, str | bytes):
        raise RdclInputError(f"expected spacing as numbers in mm, found {spacing!r}")
    try:
        if is_torch(spacing):
            spacing = spacing.detach().cpu().double().numpy()
        arr = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise RdclInputError(f"expected spacing as numbers in mm, found {spacing!r}") from None
    if arr.ndim == 0:
        arr = np.full(ndim, float(arr))
    if arr.ndim != 1 or arr.size != ndim:
        found = arr.size if arr.ndim == 1 else f"shape {arr.shape}"
        raise RdclInputError(f"expected {ndim} spacing values (array axis order), found {found}")
    sp = tuple(float(s) for s in arr)
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise RdclInputError(f"expected finite positive spacing in mm, found {sp}")
    return sp
