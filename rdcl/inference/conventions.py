"""Intensity conventions at prediction: which raw range of an input means the training window.

A checkpoint records ONE intensity convention (its training window, e.g. HU -1250..250). Inputs
may come in another: the radiopaedia volumes of COVID-19-CT-Seg were windowed to that HU range
and scaled to 0..255 before publication, while its coronacases volumes are HU. A window override
``(low, high)`` says that the input's ``low..high`` correspond to the training window; the input
is mapped linearly onto the training window before the training normalisation (for ``window``
normalisation this equals normalising with ``(low, high)``; ``zscore`` is unaffected, being
invariant to linear maps). The mapping itself is a step of the predictor pipeline
(:meth:`rdcl.inference.pipeline.PredictorPipeline.probabilities_window`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from rdcl.data.datasets.published import CORONACASES_WINDOW, RADIOPAEDIA_WINDOW
from rdcl.data.io import CHANNEL_SUFFIX, strip_suffix
from rdcl.errors import RdclInputError

_CONVENTIONS: tuple[tuple[re.Pattern[str], tuple[float, float]], ...] = (
    (re.compile(rf"coronacases_(org_)?\d+({re.escape(CHANNEL_SUFFIX)})?"), CORONACASES_WINDOW),
    (re.compile(r"radiopaedia_(org_covid-19-pneumonia-)?.+"), RADIOPAEDIA_WINDOW),
)
"""File-name patterns of published layouts and their intensity windows."""


def check_window(window: tuple[float, float] | list[float]) -> tuple[float, float]:
    """``(low, high)`` as floats; ValueError unless two finite values with low < high."""
    values = tuple(float(v) for v in window)
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] >= values[1]:
        raise RdclInputError(f"window expected (low, high) with finite low < high, found {window}")
    return values[0], values[1]


def published_window(path: str | Path) -> tuple[float, float] | None:
    """The intensity window of a file named as in a published layout, else None.

    COVID-19-CT-Seg: ``coronacases_org_NNN.nii.gz`` -> (-1250, 250) (HU);
    ``radiopaedia_org_covid-19-pneumonia-*-dcm.nii.gz`` -> (0, 255) (already windowed and scaled).
    """
    stem = strip_suffix(Path(path)).lower()
    for pattern, window in _CONVENTIONS:
        if pattern.fullmatch(stem):
            return window
    return None
