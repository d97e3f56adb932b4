"""Sliding-window inference over whole volumes or slices (nnU-Net style), one scriptable module.

The image is covered by overlapping tiles of the training patch size; each tile's logits are
weighted by a Gaussian importance map (high in the tile centre, low at its borders, where the
network sees little context) and the weighted sum is divided by the summed weights. Tiles are
evaluated ``tile_batch`` at a time, optionally averaged over flips (test-time mirroring); the
accumulators are float32 on the compute device.

:class:`SlidingWindow` is the one implementation: the eager :class:`rdcl.inference.Predictor`
runs it inside :class:`rdcl.inference.pipeline.PredictorPipeline`, ``rdcl export`` scripts that
pipeline as it is (``torch.jit.script``), and :func:`sliding_window` runs it around any callable.
The module's code keeps the forms TorchScript compiles (``typing.List``, ``int(round(..))``, list
concatenation), hence the file-level lint exceptions below.

All spatial tuples are in array order, (z, y, x) in 3D and (y, x) in 2D.
"""

# ruff: noqa: UP006, UP035, RUF005, RUF046

import itertools
import math
from collections.abc import Callable, Sequence
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from rdcl.errors import RdclInputError

NetFn = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]

GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
"""Gaussian sigma per axis as a fraction of the patch size (nnU-Net's value)."""

GAUSSIAN_FLOOR = 1e-6
"""Smallest importance weight (the peak is 1), so that no voxel of a tile has weight zero."""

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
"""``amp`` values and their autocast dtypes."""


def tile_steps(size: List[int], patch: List[int], step: float) -> List[List[int]]:
    """Tile start offsets per axis (the rule of :func:`compute_steps`, unchecked, scriptable)."""
    steps: List[List[int]] = []
    for a in range(len(patch)):
        n, p = size[a], patch[a]
        num = int(math.ceil((n - p) / (step * p))) + 1
        if num == 1:
            steps.append([0])
        else:
            stride = (n - p) / (num - 1)
            steps.append([int(round(i * stride)) for i in range(num)])
    return steps


def compute_steps(
    image_size: Sequence[int], patch: Sequence[int], step_fraction: float
) -> list[list[int]]:
    """Tile start offsets per axis.

    Along an axis of length ``n`` >= patch ``p`` the target step is ``step_fraction * p`` voxels;
    the number of tiles is ``ceil((n - p) / (step_fraction * p)) + 1`` and the tiles are spread
    evenly so that the first starts at 0 and the last ends at ``n``: start ``i`` is
    ``round(i * (n - p) / (num - 1))``. Example: n=100, p=64, step 0.5 -> 3 tiles at 0, 18, 36.

    Args:
        image_size: spatial shape (voxels), each entry >= the matching ``patch`` entry
            (pad first, see :func:`sliding_window`).
        patch: tile size (voxels).
        step_fraction: step as a fraction of the patch, in (0, 1].

    Returns:
        One list of start offsets per axis.

    Raises:
        ValueError: on mismatched lengths, a patch larger than the image, or a bad step.
    """
    if len(image_size) != len(patch):
        raise RdclInputError(
            f"image size {tuple(image_size)} and patch {tuple(patch)} need the same number of axes"
        )
    _check_step(step_fraction)
    for n, p in zip(image_size, patch, strict=True):
        if p < 1 or n < p:
            raise RdclInputError(
                f"patch {tuple(patch)} must fit inside the image {tuple(image_size)}"
            )
    return tile_steps([int(n) for n in image_size], [int(p) for p in patch], step_fraction)


def _check_step(step: float) -> None:
    if not 0.0 < step <= 1.0:
        raise RdclInputError(f"step_fraction must be in (0, 1], found {step}")


def gaussian_importance_map(
    patch: Sequence[int],
    *,
    sigma_scale: float = GAUSSIAN_SIGMA_SCALE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Separable Gaussian weight map over a tile, float32, shape ``patch``.

    ``w(v) = prod_a exp(-(v_a - c_a)^2 / (2 sigma_a^2))`` with centre ``c_a = (p_a - 1) / 2``
    (exactly symmetric, also for even sizes) and ``sigma_a = sigma_scale * p_a``; normalised so
    the maximum is 1 and clamped below at :data:`GAUSSIAN_FLOOR` so every weight is positive.
    """
    w = torch.ones((), dtype=torch.float32, device=device)
    for axis, p in enumerate(patch):
        coords = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2.0
        sigma = max(sigma_scale * p, 1e-8)
        g = torch.exp(-(coords**2) / (2.0 * sigma**2))
        shape = [1] * len(patch)
        shape[axis] = p
        w = w * g.view(shape)
    w = w / w.max()
    return w.clamp_min(GAUSSIAN_FLOOR)


def flip_sets(mirror_axes: Sequence[int]) -> list[list[int]]:
    """Every non-empty subset of the spatial ``mirror_axes`` as (batch-offset) dims to flip, in
    ``itertools.combinations`` order: the test-time mirrorings averaged with the plain output."""
    dims = [2 + int(a) for a in mirror_axes]
    return [list(c) for r in range(1, len(dims) + 1) for c in itertools.combinations(dims, r)]


class SlidingWindow(nn.Module):
    """Logits of a whole image by Gaussian-weighted overlapping tiles (scriptable).

    ``forward(image (C, *spatial)) -> float32 logits (K, *spatial)`` on the module's device (that
    of its weight map). Axes shorter than the patch are padded with zeros (symmetrically) and
    cropped back afterwards.

    Args:
        network: maps a float32 batch (B, C, *patch) to a list of logits whose first entry is
            (B, K, *patch) (rdcl networks: highest resolution first; a ``torch.jit.trace`` of one
            when the module is scripted).
        patch: tile size (voxels), one entry per spatial axis.
        step: tile step as a fraction of the patch, in (0, 1].
        tile_batch: tiles per network call (>= 1).
        mirror_axes: spatial axes (0-based) averaged over all their flip combinations.
        gaussian: weight tiles by :func:`gaussian_importance_map` (else uniform weights).
        device: where the weight map, the tiles and the accumulators live.
    """

    patch: List[int]
    step: float
    tile_batch: int
    flips: List[List[int]]

    def __init__(
        self,
        network: nn.Module,
        patch: Sequence[int],
        *,
        step: float = 0.5,
        tile_batch: int = 4,
        mirror_axes: Sequence[int] = (),
        gaussian: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if tile_batch < 1:
            raise RdclInputError(f"tile_batch must be >= 1, found {tile_batch}")
        _check_step(step)
        dim = len(patch)
        if any(not 0 <= a < dim for a in mirror_axes):
            raise RdclInputError(f"mirror_axes must be in [0, {dim}), found {tuple(mirror_axes)}")
        self.network = network
        self.patch = [int(p) for p in patch]
        self.step = float(step)
        self.tile_batch = int(tile_batch)
        self.flips = flip_sets(mirror_axes)
        weight = (
            gaussian_importance_map(self.patch, device=device)
            if gaussian
            else torch.ones(self.patch, dtype=torch.float32, device=device)
        )
        self.register_buffer("weight", weight)

    def _net(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's first output on ``batch``, averaged over the flips."""
        total = self.network(batch)[0].float()
        for dims in self.flips:
            total = total + torch.flip(self.network(torch.flip(batch, dims))[0].float(), dims)
        if len(self.flips) > 0:
            total = total / float(len(self.flips) + 1)
        return total

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (K, *spatial) of a (C, *spatial) image."""
        dim = len(self.patch)
        spatial: List[int] = list(image.shape[1:])
        before: List[int] = []
        after: List[int] = []
        for a in range(dim):
            total = max(self.patch[a] - spatial[a], 0)
            before.append(total // 2)
            after.append(total - total // 2)
        weight = self.weight
        x = image.to(device=weight.device, dtype=torch.float32)
        if max(before) > 0 or max(after) > 0:
            pads: List[int] = []  # F.pad takes (last-axis-before, last-axis-after, ...)
            for a in range(dim - 1, -1, -1):
                pads.append(before[a])
                pads.append(after[a])
            x = F.pad(x, pads)
        padded: List[int] = list(x.shape[1:])
        steps = tile_steps(padded, self.patch, self.step)
        starts: List[List[int]] = [[s] for s in steps[0]]
        for a in range(1, dim):  # itertools.product order
            grown: List[List[int]] = []
            for s in starts:
                for t in steps[a]:
                    grown.append(s + [t])
            starts = grown
        logits = torch.zeros([0], dtype=torch.float32, device=x.device)
        norm = torch.zeros(padded, dtype=torch.float32, device=x.device)
        with torch.no_grad():
            for i in range(0, len(starts), self.tile_batch):
                chunk = starts[i : i + self.tile_batch]
                tiles: List[torch.Tensor] = []
                for s in chunk:
                    tiles.append(_tile(x, s, self.patch))
                out = self._net(torch.stack(tiles))
                if out.shape[0] != len(chunk) or list(out.shape[2:]) != self.patch:
                    raise ValueError(
                        "net_fn must return (B, K, *patch) = ("
                        + str(len(chunk))
                        + ", K, "
                        + _tuple_text(self.patch)
                        + "), found "
                        + _tuple_text(list(out.shape))
                    )
                if i == 0:
                    logits = torch.zeros(
                        [out.shape[1]] + padded, dtype=torch.float32, device=x.device
                    )
                for j in range(len(chunk)):
                    _add_tile(logits, norm, out[j] * weight, weight, chunk[j], self.patch)
        logits = logits / norm
        return _crop(logits, before, spatial)


def _tuple_text(values: List[int]) -> str:
    """``str(tuple(values))`` in a form TorchScript compiles."""
    if len(values) == 1:
        return "(" + str(values[0]) + ",)"
    return "(" + ", ".join([str(v) for v in values]) + ")"


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
    """The (C, *size) region of a (C, *padded) tensor starting at ``before``."""
    for a in range(len(size)):
        x = x.narrow(a + 1, before[a], size[a])
    return x


class _Function(nn.Module):
    """A callable as a network: its output, or the first entry of a list output, as ``[out]``."""

    def __init__(self, fn: NetFn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.fn(x)
        return [out if isinstance(out, torch.Tensor) else out[0]]


class Autocast(nn.Module):
    """A network run under ``torch.autocast`` (``amp`` ``"fp16"``/``"bf16"``) on ``device_type``
    (eager only; the sliding window accumulates float32)."""

    def __init__(self, network: nn.Module, amp: str, device_type: str) -> None:
        super().__init__()
        if amp not in AMP_DTYPES:
            raise RdclInputError(f"amp must be None, 'fp16' or 'bf16', found {amp!r}")
        self.network = network
        self.dtype = AMP_DTYPES[amp]
        self.device_type = device_type

    def forward(self, x: torch.Tensor):  # the wrapped network's output
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.network(x)


def sliding_window(
    net_fn: NetFn,
    image: torch.Tensor,
    patch: Sequence[int],
    *,
    step: float = 0.5,
    tile_batch: int = 4,
    gaussian: bool = True,
    device: torch.device | str | None = None,
    mirror_axes: Sequence[int] | None = None,
    amp: str | None = None,
) -> torch.Tensor:
    """Predict logits for a whole image by overlapping tiles (:class:`SlidingWindow` around a
    callable).

    Args:
        net_fn: maps a float32 batch (B, C, *patch) to logits (B, K, *patch); a list/tuple output
            (rdcl networks: highest resolution first) is reduced to its first entry.
        image: (C, *spatial) tensor, 2D or 3D spatial. Axes shorter than the patch are padded
            with zeros (symmetrically) and cropped back afterwards.
        patch: tile size (voxels), one entry per spatial axis.
        step: tile step as a fraction of the patch (0.5 = half-overlapping tiles).
        tile_batch: number of tiles per ``net_fn`` call.
        gaussian: weight tiles by :func:`gaussian_importance_map` (else uniform weights).
        device: compute device (default: the image's device). Tiles and float32 accumulators
            live there.
        mirror_axes: spatial axes (0-based) for test-time flip averaging over all 2^k flip
            combinations; None for no mirroring.
        amp: ``"fp16"``/``"bf16"`` to run ``net_fn`` under ``torch.autocast`` on the device
            (meant for CUDA); None for float32. Accumulation stays float32.

    Returns:
        float32 logits (K, *spatial) on ``device``, the weighted mean of the overlapping tiles.

    Raises:
        ValueError: on a bad image rank, patch length, step, tile batch, mirror axis or amp value.
    """
    dim = len(patch)
    if image.ndim != dim + 1:
        raise RdclInputError(
            f"expected an image (C, *spatial) with {dim} spatial axes for patch {tuple(patch)}, "
            f"found shape {tuple(image.shape)}"
        )
    device = torch.device(device) if device is not None else image.device
    network: nn.Module = _Function(net_fn)
    window = SlidingWindow(
        network,
        patch,
        step=step,
        tile_batch=tile_batch,
        mirror_axes=tuple(mirror_axes or ()),
        gaussian=gaussian,
        device=device,
    )
    if amp is not None:
        window.network = Autocast(network, amp, device.type)
    return window(image)
