"""``rdcl demo``: the whole method on synthetic CT in a few CPU minutes, ending in a report folder.

Public API: :func:`run_demo` (synthesise, pre-train G, train ``baseline`` and ``rdcl``, predict
and score the held-out cases, write figures and ``report.md``).

Internals, imported from their modules: :mod:`rdcl.demo.pipeline` (the steps, the
``FAST``/``FULL`` settings and the demo's configuration) and :mod:`rdcl.demo.feature_relations`
(relation matrices of a trained dual-encoder network on lesion-centred batches).
"""

from __future__ import annotations

from .pipeline import run_demo

__all__ = ["run_demo"]
