"""Turning user inputs (numpy arrays, torch tensors, label maps) into binary masks and spacings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def is_cuda(x: Any) -> bool:
    """True for a torch tensor on a CUDA device."""
    return is_torch(x) and x.device.type == "cuda"


def _binary_numpy(x: np.ndarray, label: int | None, name: str) -> np.ndarray:
    if label is not None:
        return np.asarray(x == label)
    if x.dtype == np.bool_:
        return x
    if np.issubdtype(x.dtype, np.integer):
        bad = bool((x > 1).any() or (x < 0).any())
    else:
        bad = bool(((x != 0) & (x != 1)).any())
    if bad:
        raise ValueError(
            f"expected {name} to be a binary mask (bool or 0/1) or a label map with label=, "
            f"found values outside {{0, 1}} (dtype {x.dtype})"
        )
    return x != 0


def as_mask(x: Any, *, label: int | None = None, name: str = "mask") -> Any:
    """A C-contiguous bool mask: numpy for numpy/CPU-tensor input, a CUDA tensor for CUDA input.

    x: (z, y, x) or (y, x) bool, 0/1 or label-map array/tensor. label: foreground value of a label
    map. Raises ValueError for non-binary input without ``label`` or for a bad number of dims.
    """
    if is_torch(x):
        if x.device.type == "cuda":
            if label is not None:
                out = x == label
            elif x.dtype == _torch_bool(x):
                out = x
            else:
                if bool(((x != 0) & (x != 1)).any()):
                    raise ValueError(
                        f"expected {name} to be a binary mask (bool or 0/1) or a label map with "
                        f"label=, found values outside {{0, 1}} (dtype {x.dtype})"
                    )
                out = x != 0
            _check_dims(out.dim(), name)
            return out.contiguous()
        x = x.detach().numpy()
    arr = np.asarray(x)
    _check_dims(arr.ndim, name)
    return np.ascontiguousarray(_binary_numpy(arr, label, name))


def _torch_bool(x: Any) -> Any:
    import torch

    return torch.bool


def _check_dims(ndim: int, name: str) -> None:
    if ndim not in (2, 3):
        raise ValueError(f"expected {name} to be 2D (y, x) or 3D (z, y, x), found {ndim}D")


def check_pair(pred: Any, gt: Any) -> None:
    """Raises ValueError when the two masks differ in shape."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"expected pred and gt of the same shape, found {tuple(pred.shape)} and "
            f"{tuple(gt.shape)}"
        )


def as_spacing(spacing: Sequence[float] | float, ndim: int) -> tuple[float, ...]:
    """Spacing in mm, one finite positive value per array axis (a scalar is broadcast)."""
    if isinstance(spacing, int | float):
        spacing = (float(spacing),) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"expected {ndim} spacing values (array axis order), found {len(sp)}")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"expected finite positive spacing in mm, found {sp}")
    return sp
