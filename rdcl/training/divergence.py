"""The divergence guards of the training loop: :func:`check_finite` (a NaN/inf loss term or
gradient norm) and :class:`LossGrowthGuard` (a segmentation loss grown by orders of magnitude);
both raise :class:`~rdcl.errors.TrainingDivergedError` naming the step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rdcl.errors import CheckpointError, TrainingDivergedError


def check_finite(terms: dict[str, float | None], *, step: int, stage: str, last_good: Path | None):
    """Raise :class:`TrainingDivergedError` naming the step and the first non-finite term.

    Args:
        terms: name -> value; ``None`` values (unused terms) are ignored.
        step: 1-based index of the step whose values these are.
        stage: ``"pretrain"`` or ``"train"``.
        last_good: the checkpoint left intact, quoted in the message (``None``: none written yet).
    """
    for name, value in terms.items():
        if value is not None and not math.isfinite(value):
            where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint written"
            raise TrainingDivergedError(
                f"training diverged at step {step} ({stage}): {name} = {value}; expected a finite "
                f"value; stopped before the optimiser step ({where})"
            )


GROWTH_FACTOR = 100.0
"""The segmentation loss has diverged when it stays above this multiple of its baseline."""

GROWTH_FLOOR = 0.1
"""Smallest baseline: a loss that went near 0 does not make ordinary values look diverged."""

GROWTH_PATIENCE = 5
"""Consecutive steps above the threshold that make a divergence (a lone spike is not one)."""


class LossGrowthGuard:
    """Stops a run whose segmentation loss grew by orders of magnitude (issue 18: ``train.lr=1e4``
    trained to a loss of 3e7 and exited 0): the finite-but-diverged case of :func:`check_finite`.

    Rule: the baseline is the smallest segmentation loss (Dice + BCE, >= 0) of the stage so far,
    floored at :data:`GROWTH_FLOOR`; the run has diverged when the loss stays above
    :data:`GROWTH_FACTOR` x baseline for :data:`GROWTH_PATIENCE` consecutive steps, or is above
    it on the last step of the stage. The threshold is at least 10: the Dice part is at most 1,
    so only a BCE averaging > 10 nats per voxel (confidently wrong almost everywhere) gets there;
    normal training (Dice + BCE starting near 1-2 and falling) stays far below it. The values
    are the global-batch means, the same on every rank, so every DDP rank stops together.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.baseline: float | None = None
        self.over = 0
        self.since: int | None = None
        self.last: float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The guard's state (running minimum, consecutive steps above the threshold, the step
        they began, the last loss), plain data for ``last.ckpt``'s ``loss_growth`` entry, so a
        resumed run keeps its baseline instead of restarting it from the resumed loss."""
        return {
            "baseline": self.baseline,
            "over": self.over,
            "since": self.since,
            "last": self.last,
        }

    def load_state_dict(self, state: dict[str, Any] | None, *, path: Path | None = None) -> None:
        """Restore :meth:`state_dict`'s ``state``; None (a checkpoint written before rdcl saved
        the guard) keeps the fresh state. Raises :class:`~rdcl.errors.CheckpointError` naming
        the checkpoint ``path`` for a malformed entry."""
        if state is None:
            return
        try:
            baseline, over, since, last = (state[k] for k in ("baseline", "over", "since", "last"))
            ok = (
                all(v is None or _is_number(v) for v in (baseline, last))
                and _is_count(over)
                and (since is None or _is_count(since))
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            where = f"checkpoint {path}" if path else "the checkpoint"
            raise CheckpointError(
                f"{where} is damaged: its 'loss_growth' entry should hold the "
                f"numbers baseline, over, since and last, found {state!r:.120}"
            )
        self.baseline = None if baseline is None else float(baseline)
        self.last = None if last is None else float(last)
        self.over, self.since = int(over), None if since is None else int(since)

    def threshold(self) -> float:
        """The current divergence threshold (inf before the first step)."""
        if self.baseline is None:
            return math.inf
        return GROWTH_FACTOR * max(self.baseline, GROWTH_FLOOR)

    def update(self, seg: float | None, *, step: int, last_good: Path | None) -> None:
        """Account the segmentation loss of ``step`` (1-based); raises
        :class:`TrainingDivergedError` once the rule above holds."""
        if seg is None or not math.isfinite(seg):
            return
        self.last = seg
        if seg > self.threshold():
            self.over += 1
            self.since = step if self.since is None else self.since
            if self.over >= GROWTH_PATIENCE:
                self._raise(seg, step, last_good)
            return
        self.over, self.since = 0, None
        self.baseline = seg if self.baseline is None else min(self.baseline, seg)

    def finish(self, step: int, last_good: Path | None) -> None:
        """At the end of the stage: raise when the last step's loss is above the threshold."""
        if self.over:
            self._raise(self.last, step, last_good)

    def _raise(self, seg: float | None, step: int, last_good: Path | None) -> None:
        where = (
            f"no final checkpoint written ({last_good} may hold weights of the diverging steps)"
            if last_good
            else "no checkpoint written"
        )
        raise TrainingDivergedError(
            f"training diverged at step {step} ({self.stage}): the segmentation loss grew to "
            f"{seg or math.nan:.3g}, above {GROWTH_FACTOR:g} x its smallest value "
            f"{self.baseline:.3g}, since step {self.since}; expected it to stay near or below "
            f"its start (lower train.lr); {where}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
