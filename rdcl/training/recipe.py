"""The training-recipe version recorded in every checkpoint.

A checkpoint's ``config`` says what a run was asked to do; the recipe version says which meaning
rdcl gave those settings when the run trained. Versions:

- 1 (checkpoints without a ``"recipe"`` entry: written before rdcl recorded it): the relation-loss
  ramp is ``train.rampup_steps`` absolute steps (default 200); reductions ``sum`` and ``mean``.
- 2 (issue 17): the ramp is ``train.rampup_fraction`` of the stage's steps unless
  ``train.rampup_steps`` is set (then those steps, as in version 1); the ``row`` reduction
  (sum / C) exists.

A version-1 checkpoint still loads and means what it meant: its ``config`` holds the
``rampup_steps`` it trained with (the field was always written), and an explicit
``rampup_steps`` wins over the fraction in version 2 too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rdcl.errors import CheckpointError

RECIPE_KEY = "recipe"
"""Checkpoint entry holding the recipe version (an int)."""

RECIPE_VERSION = 2
"""The version written into checkpoints by this code."""

LEGACY_RECIPE_VERSION = 1
"""The version of a checkpoint without a ``"recipe"`` entry."""


def recipe_meta() -> dict[str, int]:
    """The checkpoint entry to write: ``{"recipe": RECIPE_VERSION}``."""
    return {RECIPE_KEY: RECIPE_VERSION}


def recipe_version(checkpoint: Mapping[str, Any]) -> int:
    """The recipe version of a loaded checkpoint dict (``1`` when the entry is absent).

    Raises:
        CheckpointError: the entry is present but not an integer >= 1.
    """
    version = checkpoint.get(RECIPE_KEY, LEGACY_RECIPE_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"checkpoint entry {RECIPE_KEY!r} must be an integer >= 1, found {version!r}"
        )
    return version
