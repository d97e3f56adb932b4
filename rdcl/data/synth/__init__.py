"""Synthetic chest CT phantoms with lesion masks: rdcl's embedded default data.

Each phantom has air outside the body (-1000 HU), subcutaneous fat (~-100 HU), muscle and
mediastinum (~40 HU), ribs, vertebra and sternum (cortex ~850 HU, marrow ~400-550 HU), two lungs
near -850 HU with branching tapering vessels (~40 HU) and central airways, partial-volume blur and
10-20 HU noise; then one lesion kind (see :mod:`rdcl.data.synth.lesions`). 2D cases are axial
slices of the same anatomy. Arrays are (z, y, x) / (y, x); spacing in mm in the same order.
"""

from __future__ import annotations

from rdcl.data.synth.generate import synthesize_dataset
from rdcl.data.synth.phantom import (
    KINDS,
    Phantom,
    default_spacing,
    synthesize_case,
    synthesize_phantom,
)

__all__ = [
    "KINDS",
    "Phantom",
    "default_spacing",
    "synthesize_case",
    "synthesize_dataset",
    "synthesize_phantom",
]
