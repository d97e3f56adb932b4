"""rdcl.training: train the compared methods on datasets, and read what a run leaves behind.

Public API (what a user calls; everything else is imported from its module):

- :func:`run_training`: datasets -> preprocessing -> stage 1 (when needed) -> stage 2, the
  Python form of ``rdcl train``; :func:`run_pretraining`: stage 1 alone
  (``rdcl train --pretrain-only``).
- :func:`pretrain_general` (stage 1, a single-encoder U-Net on the non-COVID lesions) and
  :func:`train` (stage 2, the configured method; Algorithm 1 for ``rdcl``/``rdcl_g``): the two
  stages on their own, with run folders of the caller's choice.
- A run folder: :func:`find_checkpoint` (the checkpoint a folder or file names),
  :func:`load_checkpoint`, :func:`read_log`; the names in it: :data:`FINAL`, :data:`LAST`
  (checkpoints), :data:`LOG_NAME` (the per-step log), :data:`PRETRAIN_DIR` (stage 1's folder).
- Errors: :class:`RunExistsError`, :class:`CheckpointError`, :class:`TrainingDivergedError`.
"""

from __future__ import annotations

from rdcl.errors import CheckpointError, TrainingDivergedError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import FINAL, LAST, LOG_NAME, PRETRAIN_DIR, find_checkpoint
from rdcl.formats.run_log import read_log

from .loop import RunExistsError
from .run import run_pretraining, run_training
from .stages import pretrain_general, train

__all__ = [
    "FINAL",
    "LAST",
    "LOG_NAME",
    "PRETRAIN_DIR",
    "CheckpointError",
    "RunExistsError",
    "TrainingDivergedError",
    "find_checkpoint",
    "load_checkpoint",
    "pretrain_general",
    "read_log",
    "run_pretraining",
    "run_training",
    "train",
]
