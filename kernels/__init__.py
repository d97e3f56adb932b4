"""Relation kernels (installed as ``rdcl.kernels``).

``relation_matrix`` and ``relation_losses`` are the entry points used by the training losses.
Until the Triton path is wired in, both dispatch to the pure-PyTorch reference.
"""

from __future__ import annotations

from .reference import relation_losses_reference, relation_matrix_reference

relation_matrix = relation_matrix_reference
relation_losses = relation_losses_reference

__all__ = [
    "relation_losses",
    "relation_losses_reference",
    "relation_matrix",
    "relation_matrix_reference",
]
