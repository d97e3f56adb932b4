"""The predictor: a trained network plus its preprocessing, from image arrays or files to masks.

Pipeline for one image: validate -> :class:`rdcl.inference.pipeline.PredictorPipeline`
(normalise with the training intensity statistics, resample to the training spacing, Gaussian
sliding window, sigmoid, probabilities back to the original shape) -> threshold 0.5; the same
module, scripted, is the file ``rdcl export`` writes. A 2D network given a 3D volume predicts it
slice by slice along z, after preprocessing the whole volume as training did (in-plane
resampling, volume-wide normalisation).

Written masks keep the input's exact geometry. NIfTI/NRRD/MHA masks hold 0/1 (uint8); PNG masks
hold 0/255 (uint8), the convention of published 2D sets such as COVID-19-CT100, so that they are
visible in an image viewer; readers of rdcl masks treat any non-zero value as lesion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rdcl.config import Config
from rdcl.data.io import (
    CHANNEL_SUFFIX,
    Geometry,
    drop_channel_suffix,
    is_image_file,
    read_image,
    strip_suffix,
    write_image,
)
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.device import resolve_device
from rdcl.errors import CheckpointError, RdclInputError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import find_checkpoint
from rdcl.fsutil import make_staging_dir, remove_stale_staging
from rdcl.inference.conventions import check_window, published_window
from rdcl.inference.pipeline import PredictorPipeline, run_pipeline
from rdcl.inference.sliding_window import Autocast
from rdcl.model import build_network
from rdcl.progress import progress_bar

logger = logging.getLogger(__name__)

PNG_FOREGROUND = 255
"""Value of lesion pixels in written PNG masks (other formats use 1)."""

MaskCallback = Callable[[Path, np.ndarray, np.ndarray, Geometry], None]
"""``on_mask(input path, image, mask uint8 0/1, geometry)``, called after each prediction."""


def output_name(in_path: str | Path, suffix: str | None = None) -> str:
    """Mask file name for an input image: channel suffix dropped, same (or given) suffix."""
    in_path = Path(in_path)
    stem = drop_channel_suffix(strip_suffix(in_path))
    return stem + (suffix if suffix is not None else in_path.name[len(strip_suffix(in_path)) :])


class Predictor:
    """A network in eval mode with the preprocessing it was trained with.

    Args:
        network: an rdcl network (``forward(x) -> list`` of logits, highest resolution first).
        config: the training configuration (patch size, target spacing, normalisation).
        intensity: training-set intensity statistics (None where the normalisation needs none).
        device: compute device, or ``"auto"``.
        step: sliding-window step as a fraction of the patch.
        tile_batch: tiles per network call.
        mirror: average over flips of every spatial axis (test-time augmentation).
        amp: ``"fp16"``/``"bf16"`` autocast (CUDA), or None for float32.
        normalization: the intensity scheme the training data used when it differs from
            ``config.data.normalization`` (a dataset's own, e.g. ``"window"`` for PNG slices).
        window: the (low, high) intensity window of the training data when it differs from
            ``config.data.window`` (e.g. (0, 255) for 8-bit PNG slices).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        config: Config,
        intensity: IntensityStats | None,
        device: str | torch.device = "auto",
        step: float = 0.5,
        tile_batch: int = 4,
        mirror: bool = False,
        amp: str | None = None,
        normalization: str | None = None,
        window: tuple[float, float] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()
        self.config = config
        self.intensity = intensity
        self.step = step
        self.tile_batch = tile_batch
        self.mirror = mirror
        self.amp = amp
        self.normalization = normalization
        self.window = tuple(window) if window is not None else None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str | torch.device = "auto", **options
    ) -> Predictor:
        """Build the network from a checkpoint's saved config and kind and load its weights.

        ``path`` is a checkpoint file or a finished training run folder, which gives its
        ``final.ckpt`` (:func:`rdcl.formats.run_folder.find_checkpoint`, as ``rdcl predict -m``).
        ``options`` are passed to the constructor (``step``, ``tile_batch``, ``mirror``, ``amp``).
        The training set's normalisation and window are taken from the checkpoint's ``dataset``
        entry (``"normalization"``, ``"window"``) when it records them, else from the config.
        Raises :class:`rdcl.errors.CheckpointError` for a missing, invalid or
        mismatching checkpoint and for a run folder without ``final.ckpt``.
        """
        path = find_checkpoint(path)
        ckpt = load_checkpoint(path)
        config = Config.from_dict(ckpt["config"])
        network = build_network(config.model, kind=ckpt["kind"])
        try:
            network.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            reason = " ".join(lines[:2])  # torch's heading and the first mismatch it lists
            reason = reason if len(reason) <= 300 else reason[:297] + "..."
            raise CheckpointError(
                f"checkpoint {path}: weights do not fit the saved {ckpt['kind']!r} network: "
                f"{reason}"
            ) from exc
        stats = ckpt.get("intensity")
        intensity = IntensityStats.from_dict(stats) if stats else None
        meta = ckpt.get("dataset") or {}
        options.setdefault("normalization", meta.get("normalization"))
        options.setdefault("window", meta.get("window"))
        return cls(network, config=config, intensity=intensity, device=device, **options)

    def with_network(self, network: nn.Module) -> Predictor:
        """A predictor with the same settings around another network (e.g. a compiled one)."""
        return Predictor(
            network,
            config=self.config,
            intensity=self.intensity,
            device=self.device,
            step=self.step,
            tile_batch=self.tile_batch,
            mirror=self.mirror,
            amp=self.amp,
            normalization=self.normalization,
            window=self.window,
        )

    @property
    def dim(self) -> int:
        """Spatial dimensionality of the network (2 or 3)."""
        return self.config.model.dim

    def _validate(self, image: np.ndarray, geometry: Geometry) -> None:
        if image.ndim not in (2, 3):
            raise RdclInputError(f"expected a 2D or 3D image, found {image.ndim}D {image.shape}")
        if image.ndim != geometry.dim:
            raise RdclInputError(
                f"image has {image.ndim} dimensions but its geometry has {geometry.dim}"
            )
        if image.ndim < self.dim:
            raise RdclInputError(f"a {self.dim}D model cannot predict a {image.ndim}D image")
        if image.size == 0:
            raise RdclInputError(f"image is empty, shape {image.shape}")
        if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
            raise RdclInputError(f"expected a real-valued image, found dtype {image.dtype}")
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise RdclInputError(f"image has {bad} NaN/inf voxels; expected finite intensities")

    @property
    def training_window(self) -> tuple[float, float]:
        """(low, high) of the training data's intensity convention (raw units, e.g. HU)."""
        lo, hi = self.window if self.window is not None else self.config.data.window
        return float(lo), float(hi)

    def pipeline(self, network: nn.Module | None = None) -> PredictorPipeline:
        """This predictor's whole prediction as one module around ``network`` (default: its own
        network, under ``torch.autocast`` when ``amp`` is set). The eager prediction runs it;
        ``rdcl export`` scripts it around the traced network."""
        if network is None:
            network = self.network
            if self.amp is not None:
                network = Autocast(network, self.amp, self.device.type)
        return PredictorPipeline(
            network,
            dim=self.dim,
            patch=self.config.data.patch_size,
            target_spacing=self.config.data.target_spacing,
            normalization=self.normalization or self.config.data.normalization,
            training_window=self.training_window,
            stats=self.intensity,
            step=self.step,
            tile_batch=self.tile_batch,
            mirror=self.mirror,
            device=self.device,
        )

    def _probabilities(
        self, image: np.ndarray, geometry: Geometry, window: tuple[float, float] | None = None
    ) -> np.ndarray:
        if window is not None:
            window = check_window(window)
            check_window(self.training_window)
        return run_pipeline(self.pipeline(), image, geometry.spacing, window)

    def predict_probabilities(
        self,
        image: np.ndarray,
        geometry: Geometry,
        *,
        window: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Lesion probability per voxel, float32 in [0, 1], the shape of ``image``.

        ``image`` is (z, y, x) or (y, x) in the input's native units (HU for CT); ``geometry``
        its :class:`~rdcl.data.io.Geometry`. ``window`` (low, high) overrides the intensity
        convention: the input's ``low..high`` correspond to :attr:`training_window` and are
        mapped linearly onto it before the training normalisation (e.g. ``(0, 255)`` for a
        radiopaedia volume of COVID-19-CT-Seg with a HU-trained model). Raises ValueError for
        4D, empty, non-finite or rank-mismatched input and a window without low < high.
        """
        image = np.asarray(image)
        self._validate(image, geometry)
        return self._probabilities(image, geometry, window)

    def predict_array(
        self,
        image: np.ndarray,
        geometry: Geometry,
        *,
        window: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Binary lesion mask (uint8 0/1, the shape of ``image``): probability > 0.5."""
        return (self.predict_probabilities(image, geometry, window=window) > 0.5).astype(np.uint8)

    def predict_file(
        self,
        in_path: str | Path,
        out_path: str | Path,
        *,
        overwrite: bool = False,
        window: tuple[float, float] | None = None,
        on_mask: MaskCallback | None = None,
    ) -> Path:
        """Predict one image file (or DICOM series folder) and write its mask atomically.

        The mask gets the input's geometry; its format follows ``out_path``'s suffix (PNG masks
        are 0/255, others 0/1). ``window`` overrides the intensity convention (see
        :meth:`predict_probabilities`); without it a file named as in a published layout gets its
        own (:func:`rdcl.inference.conventions.published_window`), any other the training
        convention, as ``rdcl predict`` does. ``on_mask(in_path, image, mask 0/1, geometry)`` is
        called with each predicted mask (for quantification). Raises FileExistsError before any work
        when ``out_path`` exists and ``overwrite`` is False; ValueError for an unsupported suffix
        or a 3D mask to PNG.
        """
        out_path = Path(out_path)
        if not is_image_file(out_path):
            raise RdclInputError(
                f"output {out_path} must end with an image suffix (.nii.gz, .png, ...)"
            )
        if out_path.exists() and out_path.resolve() == Path(in_path).resolve():
            raise RdclInputError(
                f"output {out_path} would overwrite the input image; expected another path"
            )
        if out_path.exists() and not overwrite:
            raise FileExistsError(f"output exists (pass --overwrite to replace it): {out_path}")
        image, geometry = read_image(in_path)
        if window is None:
            window = published_window(in_path)
        is_png = out_path.name.lower().endswith(".png")
        if is_png and image.ndim != 2:
            raise RdclInputError(f"cannot write a {image.ndim}D mask as PNG: {out_path}")
        try:
            mask = self.predict_array(image, geometry, window=window)
        except ValueError as exc:
            raise RdclInputError(f"{in_path}: {exc}") from exc
        if on_mask is not None:
            on_mask(Path(in_path), image, mask, geometry)
        if is_png:
            mask = mask * np.uint8(PNG_FOREGROUND)
        write_image(mask, geometry, out_path, overwrite=overwrite)
        logger.info("wrote %s (%d lesion voxels)", out_path, int(np.count_nonzero(mask)))
        return out_path

    def predict_folder(
        self,
        in_dir: str | Path,
        out_dir: str | Path,
        *,
        overwrite: bool = False,
        suffix: str | None = None,
        progress: bool = True,
        window: tuple[float, float] | None = None,
        on_mask: MaskCallback | None = None,
    ) -> list[Path]:
        """Predict every image file in ``in_dir`` into ``out_dir``; returns the written paths.

        Intensity conventions: ``window`` (low, high) applies to every case when given; else a
        case named in a published layout gets its own convention
        (:func:`rdcl.inference.conventions.published_window`: COVID-19-CT-Seg's coronacases are HU,
        its radiopaedia volumes 0-255), and any other case the training convention.
        ``on_mask`` is passed to :meth:`predict_file`.

        Output names drop nnU-Net's ``_0000`` channel suffix when every input has it (an
        nnU-Net ``imagesTs`` folder; elsewhere it is part of the name) and keep the input
        suffix unless ``suffix`` (e.g. ``".nii.gz"``) is given. Entries that are not image files
        are logged as skipped, never dropped silently. Every output name is checked before any
        work: an existing one without ``overwrite`` raises FileExistsError. Masks are written to
        a hidden staging folder beside ``out_dir`` and moved into place only when every case has
        succeeded: when a case fails, the error names the failing input and ``out_dir`` is left
        exactly as it was (earlier masks are not replaced, no folder is created).
        """
        in_dir, out_dir = Path(in_dir), Path(out_dir)
        if not in_dir.is_dir():
            raise FileNotFoundError(f"input folder not found: {in_dir}")
        entries = sorted(in_dir.iterdir())
        inputs = [p for p in entries if p.is_file() and is_image_file(p)]
        skipped = [p.name for p in entries if p not in inputs]
        if skipped:
            logger.warning("skipping %d non-image entries in %s: %s", len(skipped), in_dir, skipped)
        if not inputs:
            raise RdclInputError(f"no image files (.nii.gz, .nrrd, .mha, .png, ...) in {in_dir}")
        # Only an nnU-Net folder (every image CASE_0000.*) loses the channel suffix; elsewhere
        # _0000 is part of the name (COVID-19-CT100: tr_im_0000.png, tr_im_0001.png, ...).
        nnunet = all(strip_suffix(p).endswith(CHANNEL_SUFFIX) for p in inputs)
        outputs = [
            out_dir / (output_name(p, suffix) if nnunet else _keep_name(p, suffix)) for p in inputs
        ]
        _check_outputs(inputs, outputs, overwrite=overwrite)
        staging, made = _staging_dir(out_dir)
        bar = progress_bar(
            list(zip(inputs, outputs, strict=True)), desc="predict", unit="cases",
            disable=not progress,
        )  # fmt: skip
        try:
            for src, dst in bar:
                dst = staging / dst.name  # moved to out_dir once every case succeeded
                self.predict_file(src, dst, overwrite=overwrite, window=window, on_mask=on_mask)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in made:  # parents this call created, deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        _publish(staging, out_dir)
        return outputs


def _staging_dir(out_dir: Path) -> tuple[Path, list[Path]]:
    """A fresh hidden folder beside ``out_dir`` and the missing parents created for it."""
    made = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]
    remove_stale_staging(out_dir, "predict")  # a killed predict's folder (its owner is gone)
    return make_staging_dir(out_dir, "predict"), made


def _publish(staging: Path, out_dir: Path) -> None:
    """Move every file of ``staging`` into ``out_dir`` (renaming the folder when ``out_dir`` does
    not exist yet), each with an atomic ``os.replace``; ``staging`` is removed."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    for p in sorted(staging.iterdir()):
        os.replace(p, out_dir / p.name)
    staging.rmdir()


def _keep_name(in_path: Path, suffix: str | None) -> str:
    """Mask file name that keeps the input's name (only the suffix may change)."""
    stem = strip_suffix(in_path)
    return stem + (suffix if suffix is not None else in_path.name[len(stem) :])


def _check_outputs(inputs: Sequence[Path], outputs: Sequence[Path], *, overwrite: bool) -> None:
    seen: dict[Path, Path] = {}
    sources = {p.resolve() for p in inputs}
    for src, dst in zip(inputs, outputs, strict=True):
        if dst.resolve() in sources:
            raise RdclInputError(
                f"output {dst} would overwrite the input image {dst.name}; expected an output "
                "folder other than the input folder (or --suffix)"
            )
        if dst in seen:
            raise RdclInputError(f"inputs {seen[dst].name} and {src.name} both map to output {dst}")
        seen[dst] = src
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output(s) exist, e.g. {existing[0]} (pass --overwrite to replace)"
        )
