"""rdcl.training: checkpoints, schedules, the per-step log and the two training stages.

- :func:`run_training`: datasets -> preprocessing -> stage 1 (when needed) -> stage 2;
  :func:`run_pretraining`: stage 1 alone; :func:`find_checkpoint`: a run folder's checkpoint.
- :func:`pretrain_general`: stage 1, a single-encoder U-Net on the non-COVID lesions.
- :func:`train`: stage 2, the configured method (Algorithm 1 for ``rdcl``/``rdcl_g``).
- :func:`save_checkpoint` / :func:`load_checkpoint`: atomic, validated checkpoint files.
"""

from __future__ import annotations

from .api import PRETRAIN_DIR, find_checkpoint, run_pretraining, run_training
from .checkpoint import FINAL, FORMAT, LAST, CheckpointError, load_checkpoint, save_checkpoint
from .loop import RunExistsError, resolve_device
from .methods import Method, get_method
from .metrics_log import LOG_NAME, TrainingDivergedError, read_log
from .schedule import make_optimizer, poly_lr
from .stages import method_terms, pretrain_general, train

__all__ = [
    "FINAL",
    "FORMAT",
    "LAST",
    "LOG_NAME",
    "PRETRAIN_DIR",
    "CheckpointError",
    "Method",
    "RunExistsError",
    "TrainingDivergedError",
    "find_checkpoint",
    "get_method",
    "load_checkpoint",
    "make_optimizer",
    "method_terms",
    "poly_lr",
    "pretrain_general",
    "read_log",
    "resolve_device",
    "run_pretraining",
    "run_training",
    "save_checkpoint",
    "train",
]
