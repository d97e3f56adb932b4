"""The scriptable predictor module that ``rdcl export`` saves (see ``docs/export.md``).

:class:`PredictorModule` holds a traced network and every constant of its preprocessing and runs
the whole prediction of :class:`rdcl.inference.Predictor` in TorchScript-compatible code:
intensity window mapping (optional) -> training normalisation -> resampling to the training
spacing (``torch.nn.functional.interpolate``, linear) -> Gaussian sliding window -> sigmoid ->
resampling back (linear) -> threshold. It is written for ``torch.jit.script`` (type-annotated,
no rdcl imports at run time), so the saved file needs neither rdcl nor Python.

Shapes are in array order: (Z, Y, X) volumes, (Y, X) images; spacings in mm in the same order.
The code keeps the forms TorchScript compiles (``typing.List``/``Optional``, ``int(round(..))``,
list concatenation), hence the file-level lint exceptions below.
"""

# ruff: noqa: UP006, UP035, UP045, RUF005, RUF046

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from rdcl.errors import RdclInputError

NORMALIZATIONS = ("ct", "window", "zscore")
"""Normalisation schemes the module implements (those of :mod:`rdcl.data.intensity`)."""


def _flip_combos(mirror_axes: list[int]) -> list[list[int]]:
    """Every non-empty subset of the (batch-offset) flip dims, in ``itertools.combinations``
    order, as the eager sliding window enumerates them."""
    import itertools

    dims = [2 + a for a in mirror_axes]
    return [list(c) for r in range(1, len(dims) + 1) for c in itertools.combinations(dims, r)]


class PredictorModule(nn.Module):
    """The whole predictor as one TorchScript-able module.

    Args:
        network: the network, mapping (B, 1, *patch) float32 to a list of logits whose first
            entry is (B, 1, *patch); typically a ``torch.jit.trace`` of an rdcl network.
        dim: spatial dimensionality of the network (2 or 3).
        patch: sliding-window tile (voxels), ``dim`` entries.
        target_spacing: training spacing (mm), ``dim`` entries, or None for no resampling.
        normalization: ``"ct"``, ``"window"`` or ``"zscore"``.
        training_window: (low, high) of the training data's intensity window (raw units).
        stats: (mean, std, lo, hi) foreground statistics (needed for ``"ct"``).
        step: tile step as a fraction of the patch, in (0, 1].
        tile_batch: tiles per network call (>= 1).
        mirror: average over flips of every spatial axis.
        gaussian: the (*patch) float32 importance map.
    """

    dim: int
    patch: List[int]
    target_spacing: List[float]
    normalization: str
    window_lo: float
    window_hi: float
    stat_mean: float
    stat_std: float
    stat_lo: float
    stat_hi: float
    step: float
    tile_batch: int
    flips: List[List[int]]

    def __init__(
        self,
        network: nn.Module,
        *,
        dim: int,
        patch: tuple[int, ...],
        target_spacing: tuple[float, ...] | None,
        normalization: str,
        training_window: tuple[float, float],
        stats: tuple[float, float, float, float] | None,
        step: float,
        tile_batch: int,
        mirror: bool,
        gaussian: torch.Tensor,
    ) -> None:
        super().__init__()
        if dim not in (2, 3) or len(patch) != dim:
            raise RdclInputError(
                f"expected dim 2 or 3 and a patch of dim entries, found {dim}, {patch}"
            )
        if normalization not in NORMALIZATIONS:
            raise RdclInputError(
                f"normalization must be one of {NORMALIZATIONS}, found {normalization}"
            )
        if normalization == "ct" and stats is None:
            raise RdclInputError("normalization 'ct' needs intensity statistics; none were given")
        if target_spacing is not None and len(target_spacing) != dim:
            raise RdclInputError(f"target spacing {target_spacing} must have {dim} entries")
        if not 0.0 < step <= 1.0 or tile_batch < 1:
            raise RdclInputError(
                f"expected step in (0, 1] and tile_batch >= 1, found {step}, {tile_batch}"
            )
        self.network = network
        self.dim = int(dim)
        self.patch = [int(p) for p in patch]
        self.target_spacing = [float(t) for t in target_spacing] if target_spacing else []
        self.normalization = normalization
        self.window_lo, self.window_hi = float(training_window[0]), float(training_window[1])
        mean, std, lo, hi = stats if stats is not None else (0.0, 1.0, 0.0, 0.0)
        self.stat_mean, self.stat_std = float(mean), float(std)
        self.stat_lo, self.stat_hi = float(lo), float(hi)
        self.step = float(step)
        self.tile_batch = int(tile_batch)
        self.flips = _flip_combos(list(range(dim))) if mirror else []
        self.register_buffer("gaussian", gaussian.detach().to(torch.float32).clone())

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
        device = self.gaussian.device
        x = image.to(device=device, dtype=torch.float32)
        if window is not None:
            x = self._map_window(x, window)
        x = self._normalize(x)
        shape = list(x.shape)
        target = self._target_shape(shape, sp)
        x = _resize(x, target, self.dim, 3)
        if x.dim() == self.dim:
            prob = torch.sigmoid(self._sliding_window(x.unsqueeze(0))[0])
        else:  # a 2D network on a volume: axial slices of the preprocessed volume
            slices: List[torch.Tensor] = []
            for z in range(x.shape[0]):
                slices.append(torch.sigmoid(self._sliding_window(x[z].unsqueeze(0))[0]))
            prob = torch.stack(slices)
        prob = _resize(prob, shape, self.dim, 1)
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
        if self.normalization == "ct":
            x = torch.clamp(x, self.stat_lo, self.stat_hi)
            return (x - self.stat_mean) / max(self.stat_std, 1e-8)
        if self.normalization == "window":
            lo, hi = self.window_lo, self.window_hi
            return (torch.clamp(x, lo, hi) - lo) / (hi - lo)
        std = float(x.std(unbiased=False).item())
        return (x - x.mean()) / max(std, 1e-8)

    def _target_shape(self, shape: List[int], spacing: List[float]) -> List[int]:
        if len(self.target_spacing) == 0:
            return shape
        target = self.target_spacing
        if len(shape) == self.dim + 1:  # in-plane only for a 2D network on a volume
            target = [spacing[0]] + target
        out: List[int] = []
        for i in range(len(shape)):
            out.append(max(1, int(round(shape[i] * spacing[i] / target[i]))))
        return out

    def _steps(self, size: List[int]) -> List[List[int]]:
        steps: List[List[int]] = []
        for a in range(self.dim):
            n, p = size[a], self.patch[a]
            num = int(math.ceil((n - p) / (self.step * p))) + 1
            if num == 1:
                steps.append([0])
            else:
                stride = (n - p) / (num - 1)
                steps.append([int(round(i * stride)) for i in range(num)])
        return steps

    def _net(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.network(batch)[0].float()
        total = out
        for dims in self.flips:
            total = total + torch.flip(self.network(torch.flip(batch, dims))[0].float(), dims)
        if len(self.flips) > 0:
            total = total / float(len(self.flips) + 1)
        return total

    def _sliding_window(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (1, *spatial) of a (1, *spatial) image (see rdcl.inference.sliding_window)."""
        spatial: List[int] = list(image.shape[1:])
        before: List[int] = []
        after: List[int] = []
        for a in range(self.dim):
            total = max(self.patch[a] - spatial[a], 0)
            before.append(total // 2)
            after.append(total - total // 2)
        x = image
        if max(before) > 0 or max(after) > 0:
            pads: List[int] = []
            for a in range(self.dim - 1, -1, -1):
                pads.append(before[a])
                pads.append(after[a])
            x = F.pad(x, pads)
        padded: List[int] = list(x.shape[1:])
        steps = self._steps(padded)
        starts: List[List[int]] = [[s] for s in steps[0]]
        for a in range(1, self.dim):  # itertools.product order
            grown: List[List[int]] = []
            for s in starts:
                for t in steps[a]:
                    grown.append(s + [t])
            starts = grown
        logits = torch.zeros([1] + padded, dtype=torch.float32, device=x.device)
        norm = torch.zeros(padded, dtype=torch.float32, device=x.device)
        weight = self.gaussian
        with torch.no_grad():
            for i in range(0, len(starts), self.tile_batch):
                chunk = starts[i : i + self.tile_batch]
                tiles: List[torch.Tensor] = []
                for s in chunk:
                    tiles.append(_tile(x, s, self.patch))
                out = self._net(torch.stack(tiles))
                for j in range(len(chunk)):
                    _add_tile(logits, norm, out[j] * weight, weight, chunk[j], self.patch)
        logits = logits / norm
        return _crop(logits, before, spatial)


def _tile(x: torch.Tensor, start: List[int], patch: List[int]) -> torch.Tensor:
    """The (C, *patch) tile of a (C, *spatial) tensor at ``start``."""
    for a in range(len(patch)):
        x = x.narrow(a + 1, start[a], patch[a])
    return x


def _add_tile(
    logits: torch.Tensor,
    norm: torch.Tensor,
    value: torch.Tensor,
    weight: torch.Tensor,
    start: List[int],
    patch: List[int],
) -> None:
    """``logits[:, tile] += value`` and ``norm[tile] += weight`` (views, in place)."""
    lv = logits
    nv = norm
    for a in range(len(patch)):
        lv = lv.narrow(a + 1, start[a], patch[a])
        nv = nv.narrow(a, start[a], patch[a])
    lv.add_(value)
    nv.add_(weight)


def _crop(x: torch.Tensor, before: List[int], size: List[int]) -> torch.Tensor:
    for a in range(len(size)):
        x = x.narrow(a + 1, before[a], size[a])
    return x


SPLINE_POLE = math.sqrt(3.0) - 2.0
"""Pole of the cubic B-spline prefilter."""

SPLINE_PAD = 12
"""Edge samples added on each side before the spline prefilter (scipy's ``mode="nearest"``)."""


def _resize(x: torch.Tensor, shape: List[int], dim: int, order: int) -> torch.Tensor:
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
    """Resample one axis of a float64 tensor to ``n_out`` samples (see :func:`_resize`)."""
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
        pos = pos + 12.0  # SPLINE_PAD (TorchScript cannot read module globals)
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
    ``mode="nearest"``: the recursive prefilter (pole z = sqrt(3) - 2) with a constant
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


def stats_tuple(stats: object) -> Optional[Tuple[float, float, float, float]]:
    """``(mean, std, lo, hi)`` of an :class:`rdcl.data.intensity.IntensityStats`, or None."""
    if stats is None:
        return None
    return (float(stats.mean), float(stats.std), float(stats.lo), float(stats.hi))
