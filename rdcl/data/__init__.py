"""rdcl.data: image I/O, dataset layouts, preprocessing and the array cache, patch sampling,
augmentation and the seeded DataLoader."""

from __future__ import annotations

from rdcl.data.datasets.layout import Case, DatasetError, DatasetSpec, load_case, load_dataset
from rdcl.data.io import Geometry, ImageReadError, read_image, read_info, write_image
from rdcl.data.preprocessing.preprocess import (
    CachedDataset,
    IntensityStats,
    compute_intensity_stats,
    normalize,
    preprocess_case,
    preprocess_dataset,
    restore,
)
from rdcl.data.sampling.device_augment import finish_batch
from rdcl.data.sampling.loader import make_loader
from rdcl.data.sampling.sampler import PatchSampler

__all__ = [
    "CachedDataset",
    "Case",
    "DatasetError",
    "DatasetSpec",
    "Geometry",
    "ImageReadError",
    "IntensityStats",
    "PatchSampler",
    "compute_intensity_stats",
    "finish_batch",
    "load_case",
    "load_dataset",
    "make_loader",
    "normalize",
    "preprocess_case",
    "preprocess_dataset",
    "read_image",
    "read_info",
    "restore",
    "write_image",
]
