"""Prediction: sliding-window inference and the checkpoint-to-mask predictor."""

from __future__ import annotations

from rdcl.inference.predictor import Predictor, output_name
from rdcl.inference.sliding_window import (
    compute_steps,
    gaussian_importance_map,
    sliding_window,
)

__all__ = ["Predictor", "compute_steps", "gaussian_importance_map", "output_name", "sliding_window"]
