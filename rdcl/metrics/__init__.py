"""rdcl.metrics: DSC, normalised surface Dice, robust Hausdorff and ASSD.

Surface metrics reproduce google-deepmind/surface-distance exactly, computed by the C++/CUDA engine
(``rdcl._surface``) with a numpy reference as oracle and fallback (warned once; ``engine()`` says
which runs, ``RDCL_REQUIRE_ENGINE=1`` makes the fallback an error). See :mod:`rdcl.metrics.surface`.
"""

from __future__ import annotations

from rdcl.metrics._engine import CUDA_BUILT, HAVE_EXTENSION, engine, import_error
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
    "engine",
    "hausdorff",
    "import_error",
    "surface_dice",
    "surface_distances",
]
