"""The predictor pipeline: one scriptable module from raw intensities to lesion probabilities.

:class:`PredictorPipeline` holds a network and every constant of its preprocessing and runs the
whole prediction: intensity window mapping (optional) -> training normalisation (one of
:data:`rdcl.config.NORMALIZATIONS`) -> resampling to the training spacing (cubic B-spline,
:func:`resize`) -> Gaussian sliding window (:class:`rdcl.inference.sliding_window.SlidingWindow`,
optional mirroring) -> sigmoid -> resampling back to the input grid (linear) -> probabilities;
``forward`` thresholds them at 0.5. It is the one implementation of prediction: the eager
:class:`rdcl.inference.Predictor` runs it as a plain module around its network, and
``rdcl export`` saves ``torch.jit.script`` of it around the traced network, a file that needs
neither rdcl nor Python (the method contract is in ``docs/export.md``).

The resampling reproduces ``scipy.ndimage.zoom(x, ..., order, mode="nearest", grid_mode=True)``,
the resampling of training's cache (:mod:`rdcl.data.preprocessing.resample`), in float64 torch
(tests compare the two). Shapes are in array order: (Z, Y, X) volumes, (Y, X) images; spacings in
mm in the same order. The code keeps the forms TorchScript compiles (``typing.List``/``Optional``,
``int(round(..))``, list concatenation, literal constants), hence the file-level lint exceptions
below.
"""

# ruff: noqa: UP006, UP035, UP045, RUF005, RUF046

import math
from collections.abc import Sequence
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from rdcl.config import NORMALIZATIONS, alternatives
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.errors import RdclInputError
from rdcl.inference.sliding_window import SlidingWindow

SPLINE_POLE = math.sqrt(3.0) - 2.0
"""Pole of the cubic B-spline prefilter (written as a literal inside :func:`_spline_coefficients`,
which TorchScript compiles)."""

SPLINE_PAD = 12
"""Edge samples added on each side before the spline prefilter (scipy's ``mode="nearest"``;
a literal inside :func:`_zoom_axis` and :func:`_spline_coefficients`)."""


class PredictorPipeline(nn.Module):
    """The whole predictor as one TorchScript-able module.

    Args:
        network: maps (B, 1, *patch) float32 to a list of logits whose first entry is
            (B, 1, *patch): an rdcl network, or a ``torch.jit.trace`` of one to be scripted.
        dim: spatial dimensionality of the network (2 or 3).
        patch: sliding-window tile (voxels), ``dim`` entries.
        target_spacing: training spacing (mm), ``dim`` entries; None or an unresolved ``"auto"``
            predicts on the input's own grid (as training's cache does).
        normalization: one of :data:`rdcl.config.NORMALIZATIONS`.
        training_window: (low, high) of the training data's intensity window (raw units).
        stats: foreground statistics of the training set (needed for ``"ct"``).
        step: tile step as a fraction of the patch, in (0, 1].
        tile_batch: tiles per network call (>= 1).
        mirror: average over flips of every spatial axis.
        device: where the pipeline computes (that of the network's parameters).
    """

    dim: int
    target_spacing: List[float]
    normalization: str
    window_lo: float
    window_hi: float
    stat_mean: float
    stat_std: float
    stat_lo: float
    stat_hi: float

    def __init__(
        self,
        network: nn.Module,
        *,
        dim: int,
        patch: Sequence[int],
        target_spacing: Sequence[float] | str | None,
        normalization: str,
        training_window: Sequence[float],
        stats: IntensityStats | None,
        step: float = 0.5,
        tile_batch: int = 4,
        mirror: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if dim not in (2, 3) or len(patch) != dim:
            raise RdclInputError(
                f"expected dim 2 or 3 and a patch of dim entries, found {dim}, {tuple(patch)}"
            )
        if normalization not in NORMALIZATIONS:
            raise RdclInputError(
                f"normalization must be {alternatives(NORMALIZATIONS)}, found {normalization!r}"
            )
        if normalization == "ct" and stats is None:
            raise RdclInputError("normalization 'ct' needs IntensityStats; none were given")
        lo, hi = float(training_window[0]), float(training_window[1])
        if normalization == "window" and not lo < hi:
            raise RdclInputError(
                f"window expected (low, high) with low < high, found {tuple(training_window)}"
            )
        if isinstance(target_spacing, str):
            target_spacing = None
        if target_spacing is not None and len(target_spacing) != dim:
            raise RdclInputError(f"target spacing {target_spacing} must have {dim} entries")
        self.sliding_window = SlidingWindow(
            network,
            patch,
            step=step,
            tile_batch=tile_batch,
            mirror_axes=tuple(range(dim)) if mirror else (),
            device=device,
        )
        self.dim = int(dim)
        self.target_spacing = [float(t) for t in target_spacing] if target_spacing else []
        self.normalization = normalization
        self.window_lo, self.window_hi = lo, hi
        mean, std, s_lo, s_hi = (
            (stats.mean, stats.std, stats.lo, stats.hi) if stats is not None else (0.0, 1.0, 0, 0)
        )
        self.stat_mean, self.stat_std = float(mean), float(std)
        self.stat_lo, self.stat_hi = float(s_lo), float(s_hi)

    # -- public methods (the contract of docs/export.md) -------------------------------------

    def forward(self, image: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
        """uint8 0/1 lesion mask of ``image``'s shape (probability > 0.5)."""
        return (self._predict(image, spacing, None) > 0.5).to(torch.uint8)

    @torch.jit.export
    def probabilities(self, image: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
        """float32 lesion probabilities in [0, 1] of ``image``'s shape."""
        return self._predict(image, spacing, None)

    @torch.jit.export
    def forward_window(
        self, image: torch.Tensor, spacing: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        """Mask of an image whose ``window`` (low, high) corresponds to the training window."""
        return (self._predict(image, spacing, window) > 0.5).to(torch.uint8)

    @torch.jit.export
    def probabilities_window(
        self, image: torch.Tensor, spacing: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        """Probabilities of an image whose ``window`` corresponds to the training window."""
        return self._predict(image, spacing, window)

    # -- pipeline --------------------------------------------------------------------------

    def _predict(
        self, image: torch.Tensor, spacing: torch.Tensor, window: Optional[torch.Tensor]
    ) -> torch.Tensor:
        sp = self._check(image, spacing)
        x = image.to(device=self.sliding_window.weight.device, dtype=torch.float32)
        if window is not None:
            x = self._map_window(x, window)
        x = self._normalize(x)
        shape = list(x.shape)
        x = resize(x, self._target_shape(shape, sp), self.dim, 3)
        if x.dim() == self.dim:
            prob = torch.sigmoid(self.sliding_window(x.unsqueeze(0))[0])
        else:  # a 2D network on a volume: axial slices of the preprocessed volume
            slices: List[torch.Tensor] = []
            for z in range(x.shape[0]):
                slices.append(torch.sigmoid(self.sliding_window(x[z].unsqueeze(0))[0]))
            prob = torch.stack(slices)
        prob = resize(prob, shape, self.dim, 1)
        return prob.to(image.device)

    def _check(self, image: torch.Tensor, spacing: torch.Tensor) -> List[float]:
        if image.dim() != self.dim and not (self.dim == 2 and image.dim() == 3):
            ranks = "(Z, Y, X)" if self.dim == 3 else "(Y, X) or (Z, Y, X)"
            raise RuntimeError(
                "rdcl: expected an image " + ranks + ", found " + str(image.dim()) + " dimensions"
            )
        if image.numel() == 0:
            raise RuntimeError("rdcl: expected a non-empty image, found shape " + str(image.shape))
        if spacing.dim() != 1 or spacing.shape[0] != image.dim():
            raise RuntimeError(
                "rdcl: expected a spacing of "
                + str(image.dim())
                + " entries (mm, array order), found shape "
                + str(spacing.shape)
            )
        sp: List[float] = spacing.to(device=torch.device("cpu"), dtype=torch.float64).tolist()
        for s in sp:
            if not (math.isfinite(s) and s > 0.0):
                raise RuntimeError("rdcl: expected finite positive spacings, found " + str(sp))
        if not bool(torch.isfinite(image).all()):
            raise RuntimeError("rdcl: expected finite intensities, found NaN/inf voxels")
        return sp

    def _map_window(self, x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Map ``window`` (low, high) of the input linearly onto the training window."""
        if window.numel() != 2:
            raise RuntimeError(
                "rdcl: expected a window (low, high), found shape " + str(window.shape)
            )
        w: List[float] = window.to(device=torch.device("cpu"), dtype=torch.float64).tolist()
        lo, hi = w[0], w[1]
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise RuntimeError("rdcl: expected a window low < high, found " + str(w))
        scale = (self.window_hi - self.window_lo) / (hi - lo)
        return (x - lo) * scale + self.window_lo

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The training normalisation (the schemes of :mod:`rdcl.data.preprocessing.intensity`)."""
        if self.normalization == "ct":
            x = torch.clamp(x, self.stat_lo, self.stat_hi)
            return (x - self.stat_mean) / max(self.stat_std, 1e-8)
        if self.normalization == "window":
            lo, hi = self.window_lo, self.window_hi
            return (torch.clamp(x, lo, hi) - lo) / (hi - lo)
        std = float(x.std(unbiased=False).item())
        return (x - x.mean()) / max(std, 1e-8)

    def _target_shape(self, shape: List[int], spacing: List[float]) -> List[int]:
        """``round(n * spacing / target)`` per axis, at least 1 (the rule of
        :func:`rdcl.data.preprocessing.resample.target_shape`); in-plane only for a 2D network on a
        volume."""
        if len(self.target_spacing) == 0:
            return shape
        target = self.target_spacing
        if len(shape) == self.dim + 1:
            target = [spacing[0]] + target
        out: List[int] = []
        for i in range(len(shape)):
            out.append(max(1, int(round(shape[i] * spacing[i] / target[i]))))
        return out


def resize(x: torch.Tensor, shape: List[int], dim: int, order: int) -> torch.Tensor:
    """Resample the spatial axes of ``x`` ((*spatial)) to ``shape`` as
    ``scipy.ndimage.zoom(x, ..., order, mode="nearest", grid_mode=True)`` does (order 1: linear,
    order 3: cubic B-spline), axis by axis in float64; float32 out. A 2D network on a volume
    resamples in-plane only (axis 0 keeps its length). Identity when the shape is unchanged."""
    if list(x.shape) == shape:
        return x
    if dim == 2 and x.dim() == 3 and shape[0] != x.shape[0]:
        raise RuntimeError("rdcl: internal error, slice count changed in resampling")
    y = x.to(torch.float64)
    for a in range(len(shape)):
        y = _zoom_axis(y, a, shape[a], order)
    return y.to(torch.float32)


def _zoom_axis(x: torch.Tensor, axis: int, n_out: int, order: int) -> torch.Tensor:
    """Resample one axis of a float64 tensor to ``n_out`` samples (see :func:`resize`)."""
    n_in = x.shape[axis]
    y = x.movedim(axis, 0)
    rest: List[int] = list(y.shape[1:])
    y = y.reshape(n_in, -1)
    # source coordinate of each output sample (grid mode: voxel edges aligned)
    pos = (torch.arange(n_out, dtype=torch.float64, device=x.device) + 0.5) * (
        float(n_in) / float(n_out)
    ) - 0.5
    if order == 1:
        pos = pos.clamp(0.0, float(n_in - 1))
        i0 = torch.floor(pos)
        t = (pos - i0).unsqueeze(1)
        i0l = i0.to(torch.long)
        i1l = (i0l + 1).clamp(max=n_in - 1)
        out = y.index_select(0, i0l) * (1.0 - t) + y.index_select(0, i1l) * t
    else:
        c = _spline_coefficients(y)
        pos = pos + 12.0  # SPLINE_PAD
        i0 = torch.floor(pos)
        t = (pos - i0).unsqueeze(1)
        i0l = i0.to(torch.long)
        m = c.shape[0]
        t2 = t * t
        t3 = t2 * t
        w = [
            (1.0 - t) ** 3 / 6.0,
            (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
            (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
            t3 / 6.0,
        ]
        out = torch.zeros((n_out, c.shape[1]), dtype=torch.float64, device=x.device)
        for k in range(4):
            idx = (i0l + (k - 1)).clamp(0, m - 1)
            out = out + c.index_select(0, idx) * w[k]
    return out.reshape([n_out] + rest).movedim(0, axis)


def _spline_coefficients(y: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients along axis 0 of ``y`` (n, N), edge-padded by
    :data:`SPLINE_PAD` samples at both ends ((n + 2 * pad, N)), as scipy computes them for
    ``mode="nearest"``: the recursive prefilter (pole :data:`SPLINE_POLE`) with a constant
    continuation at both ends, exact for the edge-padded signal. Axis 0 is the loop axis, so each
    step works on one contiguous row of N values."""
    pad = 12  # SPLINE_PAD
    n = y.shape[0]
    s = torch.cat([y[:1].expand(pad, -1), y, y[n - 1 :].expand(pad, -1)], dim=0) * 6.0
    z = math.sqrt(3.0) - 2.0  # SPLINE_POLE
    m = s.shape[0]
    c = torch.empty_like(s)
    prev = s[0] / (1.0 - z)
    c[0] = prev
    for k in range(1, m):
        prev = s[k] + z * prev
        c[k] = prev
    prev = -z * c[m - 1] / (1.0 - z)
    c[m - 1] = prev
    for k in range(m - 2, -1, -1):
        prev = z * (prev - c[k])
        c[k] = prev
    return c


def run_pipeline(
    module: nn.Module,
    image: np.ndarray,
    spacing: Sequence[float],
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """float32 probabilities of ``image`` (array order, raw units) at ``spacing`` (mm) from a
    :class:`PredictorPipeline` or an exported (scripted) one; ``window`` (low, high) runs
    ``probabilities_window``."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    sp = torch.tensor(tuple(spacing), dtype=torch.float64)
    with torch.no_grad():
        if window is None:
            prob = module.probabilities(x, sp)
        else:
            w = torch.tensor([float(window[0]), float(window[1])], dtype=torch.float64)
            prob = module.probabilities_window(x, sp, w)
    return prob.cpu().numpy()
