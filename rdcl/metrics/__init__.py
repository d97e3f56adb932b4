"""rdcl.metrics: DSC, normalised surface Dice, robust Hausdorff and ASSD.

Surface metrics reproduce google-deepmind/surface-distance exactly, computed by the C++/CUDA engine
(``rdcl._surface``) with a numpy reference as oracle and fallback. See :mod:`rdcl.metrics.surface`.
"""

from __future__ import annotations

from rdcl.metrics._engine import CUDA_BUILT, HAVE_EXTENSION
from rdcl.metrics.surface import (
    SurfaceDistances,
    assd,
    dice,
    hausdorff,
    surface_dice,
    surface_distances,
)

__all__ = [
    "CUDA_BUILT",
    "HAVE_EXTENSION",
    "SurfaceDistances",
    "assd",
    "dice",
    "hausdorff",
    "surface_dice",
    "surface_distances",
]
