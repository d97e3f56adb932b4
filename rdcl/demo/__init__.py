"""``rdcl demo``: the whole method on synthetic CT in a few CPU minutes, ending in a report folder.

- :func:`run_demo` (:mod:`rdcl.demo.pipeline`): synthesise, pre-train G, train ``baseline`` and
  ``rdcl``, predict and score the held-out cases, write figures and ``report.md``.
- :func:`relation_matrices` (:mod:`rdcl.demo.relations`): R_G(X_n), R_G(X_c), R_T(X_c) of a
  trained dual-encoder network on lesion-centred batches.
"""

from __future__ import annotations

from .pipeline import FAST, FULL, METHODS, DemoSettings, demo_config, run_demo
from .relations import crop_around, lesion_batch, relation_matrices

__all__ = [
    "FAST",
    "FULL",
    "METHODS",
    "DemoSettings",
    "crop_around",
    "demo_config",
    "lesion_batch",
    "relation_matrices",
    "run_demo",
]
