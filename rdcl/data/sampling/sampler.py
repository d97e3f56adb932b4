"""Patch sampling with nnU-Net-style foreground oversampling.

A batch is a pure function of ``(seed, step)``: each sample ``b`` draws from its own generator
``numpy.random.default_rng([seed, step, b])``, so a resumed run sees exactly the batches of an
uninterrupted one, whichever process (or DataLoader worker) computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from rdcl.config import AUGMENT_ON, DataConfig
from rdcl.data.datasets.layout import DatasetError
from rdcl.data.sampling.augment import (
    PAD_MODES,
    AugmentParams,
    augment_intensity,
    draw_intensity,
    random_flip,
    sample_spatial,
    transformed_crop,
)
from rdcl.data.sampling.device_augment import NOISE_SEED_BOUND, Recipe, source_region
from rdcl.errors import RdclInputError


class ArrayDataset(Protocol):
    """What the sampler needs: ``len`` and ``ds[i] -> (image (C, *spatial), label (*spatial))``;
    optionally ``foreground(i) -> (K, ndim)`` coordinates (e.g. :class:`CachedDataset`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]: ...


def num_foreground_samples(batch_size: int, fraction: float) -> int:
    """How many samples of a batch are forced to contain foreground (the last ones).

    nnU-Net's rule: sample ``b`` is forced when ``b >= round(B * (1 - fraction))``, so this is
    ``B - round(B * (1 - fraction))`` (Python rounds halves to even): B = 2, p = 0.33 -> 1.
    """
    return batch_size - round(batch_size * (1.0 - fraction))


def padding_fraction(shape: Sequence[int], patch: Sequence[int]) -> float:
    """Fraction of a ``patch`` (voxels) that lies outside a case of ``shape`` (spatial; a 3D
    shape under a 2D patch counts its in-plane axes), for an unrotated crop: crops of a case at
    least as large as the patch stay inside it (0.0); smaller cases are padded."""
    dims = list(shape)[-len(patch) :]
    inside = float(np.prod([min(n, p) for n, p in zip(dims, patch, strict=True)]))
    return 1.0 - inside / float(np.prod(patch))


def expected_padding(dataset: ArrayDataset, patch: Sequence[int]) -> float:
    """Mean :func:`padding_fraction` over the cases of ``dataset``: the expected padding of a
    sample, since :class:`PatchSampler` draws its cases uniformly (rotation and scaling, which
    can add a little at the corners, left out). Reads only array shapes (memory maps)."""
    fractions = [padding_fraction(dataset[i][0].shape[1:], patch) for i in range(len(dataset))]
    return float(np.mean(fractions)) if fractions else 0.0


class PatchSampler:
    """Draw training batches of patches from an array dataset.

    ``data_cfg.patch_size`` sets the patch and its dimension: a 3D patch on 3D volumes, a 2D patch
    on 2D images, or a 2D patch on 3D volumes (axial slices: a slice index is drawn first). The
    last :func:`num_foreground_samples` samples of each batch are centred on a random foreground
    voxel of a random case (nnU-Net; a case without foreground falls back to a random patch); the
    others are uniformly random crops. Volumes smaller than the patch are padded (``pad_mode``
    ``"constant"``: zeros, ``"edge"``: nearest value; labels with 0). Augmentation follows
    ``data_cfg.augment`` unless ``augment`` is given; rotated/scaled patches are interpolated by
    :func:`rdcl.data.sampling.augment.transformed_crop`.

    ``batch(step) -> {"image": float32 tensor (B, C, *patch), "label": float32 tensor
    (B, 1, *patch) in {0, 1}, "case": int64 tensor (B,)}``. With ``augment_on="device"``
    (default ``data_cfg.augment_on``) and augmentation on, the batch is deferred instead:
    ``{"source_image": [float32 (C, *region_b)], "source_label": [uint8 (*region_b)],
    "recipe": [Recipe], "case"}``, the same draws, finished on the training device by
    :func:`rdcl.data.sampling.device_augment.finish_batch`.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        data_cfg: DataConfig,
        *,
        seed: int,
        augment: bool | None = None,
        params: AugmentParams | None = None,
        pad_mode: str = "constant",
        augment_on: str | None = None,
    ) -> None:
        if len(dataset) == 0:
            raise DatasetError("cannot sample patches from an empty dataset")
        if pad_mode not in PAD_MODES:
            raise RdclInputError(f"pad_mode must be one of {PAD_MODES}, found {pad_mode!r}")
        augment_on = data_cfg.augment_on if augment_on is None else augment_on
        if augment_on not in AUGMENT_ON:
            raise RdclInputError(f"augment_on must be one of {AUGMENT_ON}, found {augment_on!r}")
        if seed < 0:
            raise RdclInputError(f"seed must be >= 0, found {seed}")
        self.dataset = dataset
        self.patch = tuple(int(p) for p in data_cfg.patch_size)
        self.batch_size = int(data_cfg.batch_size)
        self.n_foreground = num_foreground_samples(self.batch_size, data_cfg.foreground_oversample)
        self.seed = int(seed)
        self.augment = data_cfg.augment if augment is None else augment
        self.params = params or AugmentParams()
        self.pad_mode = pad_mode
        self.deferred = bool(self.augment) and augment_on == "device"
        self._fg: dict[int, np.ndarray] = {}

    def _case(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.dataset[i]
        if label is None:
            raise DatasetError(f"case {i} has no label; patch sampling needs labelled cases")
        if image.ndim != label.ndim + 1 or image.shape[1:] != label.shape:
            raise DatasetError(
                f"case {i}: expected image (C, *spatial) and label (*spatial), found "
                f"{image.shape} and {label.shape}"
            )
        if label.ndim not in (len(self.patch), len(self.patch) + 1) or label.ndim > 3:
            raise DatasetError(
                f"case {i}: a {len(self.patch)}D patch {self.patch} cannot be drawn from a "
                f"{label.ndim}D case"
            )
        return image, label

    def _foreground(self, i: int, label: np.ndarray) -> np.ndarray:
        if i not in self._fg:
            getter = getattr(self.dataset, "foreground", None)
            self._fg[i] = getter(i) if getter is not None else np.argwhere(label > 0)
        return self._fg[i]

    def _start(
        self, shape: Sequence[int], rng: np.random.Generator, centre: np.ndarray | None
    ) -> list[int]:
        start = []
        for d, (n, p) in enumerate(zip(shape, self.patch, strict=True)):
            lo, hi = min(0, n - p), max(0, n - p)
            if centre is None:
                start.append(int(rng.integers(lo, hi + 1)))
            else:
                start.append(int(np.clip(int(centre[d]) - p // 2, lo, hi)))
        return start

    def _locate(
        self, step: int, b: int
    ) -> tuple[np.random.Generator, int, np.ndarray, np.ndarray, list[int], float, float]:
        """The draws every sample starts with: ``(rng, case, image, label, start, angle,
        scale)`` (a 3D case sliced to the drawn axial slice for a 2D patch)."""
        rng = np.random.default_rng([self.seed, int(step), int(b)])
        i = int(rng.integers(len(self.dataset)))
        image, label = self._case(i)
        force_fg = b >= self.batch_size - self.n_foreground
        voxel = None
        if force_fg:
            fg = self._foreground(i, label)
            if len(fg):
                voxel = np.asarray(fg[int(rng.integers(len(fg)))])
        if label.ndim == len(self.patch) + 1:
            z = int(voxel[0]) if voxel is not None else int(rng.integers(label.shape[0]))
            image, label = image[:, z], label[z]
            voxel = voxel[1:] if voxel is not None else None
        start = self._start(label.shape, rng, voxel)
        angle, scale = sample_spatial(rng, self.params) if self.augment else (0.0, 1.0)
        return rng, i, image, label, start, angle, scale

    def sample(self, step: int, b: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Sample ``b`` of batch ``step``: ``(image (C, *patch), label (*patch) uint8, case)``."""
        rng, i, image, label, start, angle, scale = self._locate(step, b)
        img, lab = transformed_crop(
            image,
            label,
            start,
            self.patch,
            angle=angle,
            scale=scale,
            pad_mode=self.pad_mode,
        )
        if self.augment:
            img, lab = random_flip(img, lab, rng, self.params.p_flip)
            img = augment_intensity(img, rng, self.params)
        return img, lab, i

    def deferred_sample(self, step: int, b: int) -> tuple[np.ndarray, np.ndarray, Recipe, int]:
        """Sample ``b`` of batch ``step`` with its augmentation left to the device: ``(image
        (C, *region) float32, label (*region) uint8, recipe, case)``, the draws of
        :meth:`sample` in the same order (the noise's values replaced by a seed)."""
        rng, i, image, label, start, angle, scale = self._locate(step, b)
        img, lab, fields = source_region(
            image, label, start, self.patch, angle, scale, self.pad_mode
        )
        flips = tuple(a for a in range(len(self.patch)) if rng.random() < self.params.p_flip)
        draw = draw_intensity(rng, self.params)
        noise_seed = int(rng.integers(NOISE_SEED_BOUND)) if draw.noise_variance is not None else 0
        recipe = Recipe(
            patch=self.patch,
            angle=angle,
            scale=scale,
            pad_mode=self.pad_mode,
            flips=flips,
            intensity=draw,
            noise_seed=noise_seed,
            **fields,
        )
        return img, lab, recipe, i

    def batch(self, step: int, indices: Sequence[int] | None = None) -> dict[str, Any]:
        """Batch ``step`` (a pure function of ``(seed, step)``); see the class docstring.

        ``indices`` selects samples of that batch (default all ``range(batch_size)``): a DDP
        rank r of W draws ``range(r * B / W, (r + 1) * B / W)``, so the W ranks together hold
        exactly the batch one process would draw (``rdcl.training.distributed``).
        """
        indices = range(self.batch_size) if indices is None else indices
        if any(not 0 <= b < self.batch_size for b in indices):
            raise ValueError(f"sample indices must be in [0, {self.batch_size}), found {indices}")
        if self.deferred:
            parts = [self.deferred_sample(step, b) for b in indices]
            return {
                "source_image": [torch.from_numpy(p[0]) for p in parts],
                "source_label": [torch.from_numpy(p[1]) for p in parts],
                "recipe": [p[2] for p in parts],
                "case": torch.tensor([p[3] for p in parts], dtype=torch.int64),
            }
        samples = [self.sample(step, b) for b in indices]
        image = np.stack([s[0] for s in samples]).astype(np.float32, copy=False)
        label = np.stack([s[1] for s in samples])[:, None].astype(np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "case": torch.tensor([s[2] for s in samples], dtype=torch.int64),
        }
