"""The Markdown summary (``report.md``): score tables, figure links, timings, configuration."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rdcl.errors import RdclInputError
from rdcl.fsutil import write_text_atomic

METRICS: tuple[tuple[str, str], ...] = (("dsc", "DSC"), ("nsd", "NSD@3mm"))
"""(per-case record key, column title) of the reported metrics; the keys of
``rdcl.metrics.evaluate.evaluate_folders`` rows."""


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and population standard deviation (ddof=0) of the finite values, and their count.

    NaN entries (a case whose ground truth and prediction are both empty has no DSC/NSD) are
    left out; no finite value gives (nan, nan, 0).
    """
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan, 0
    return float(arr.mean()), float(arr.std()), int(arr.size)


def _num(v: Any) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{float(v):.3f}"


def _score_table(scores: Mapping[str, list[dict]], metrics: Sequence[tuple[str, str]]) -> list[str]:
    head = "| method | cases | " + " | ".join(title for _, title in metrics) + " |"
    lines = [head, "|---|---|" + "---|" * len(metrics)]
    means: dict[str, dict[str, float]] = {}
    for method, records in scores.items():
        cells = []
        for key, _ in metrics:
            mean, std, n = mean_std([r.get(key) for r in records])
            means.setdefault(key, {})[method] = mean
            cells.append(f"{_num(mean)} ± {_num(std)}" + (f" (n={n})" if n != len(records) else ""))
        lines.append(f"| {method} | {len(records)} | " + " | ".join(cells) + " |")
    if len(scores) > 1:
        lines.append("")
        for key, title in metrics:
            finite = {m: v for m, v in means.get(key, {}).items() if math.isfinite(v)}
            if finite:
                best = max(finite, key=finite.__getitem__)
                lines.append(f"- highest mean {title}: **{best}** ({_num(finite[best])})")
    return lines


def _case_table(scores: Mapping[str, list[dict]], metrics: Sequence[tuple[str, str]]) -> list[str]:
    cases = list(dict.fromkeys(str(r["case"]) for records in scores.values() for r in records))
    by_method = {m: {str(r["case"]): r for r in records} for m, records in scores.items()}
    cols = [f"{m} {title}" for m in scores for _, title in metrics]
    lines = ["| case | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for case in cases:
        cells = [
            _num(by_method[m][case].get(key)) if case in by_method[m] else "–"
            for m in scores
            for key, _ in metrics
        ]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return lines


def write_summary(
    out_dir: str | Path,
    *,
    scores: Mapping[str, list[dict]],
    figures: Mapping[str, str | Path],
    timings: Mapping[str, float],
    config: Mapping[str, Any],
    title: str = "rdcl demo report",
    notes: Sequence[str] = (),
    metrics: Sequence[tuple[str, str]] = METRICS,
) -> Path:
    """Write ``out_dir/report.md`` atomically and return its path.

    Args:
        out_dir: the report folder (created if missing).
        scores: method -> per-case records ``{"case": str, "dsc": float, "nsd": float}``
            (``evaluate_folders`` rows; other keys are ignored) over the
            held-out cases; the table gives mean ± population std over the finite values.
        figures: caption -> PNG path; each must exist and is linked relative to ``out_dir``.
        timings: stage -> wall-clock seconds, listed in order with their total.
        config: JSON-serialisable mapping (e.g. ``{"baseline": cfg.to_dict(), ...}``), embedded.
        title: the top heading.
        notes: paragraphs placed under the title (data description, caveats).
        metrics: (record key, column title) pairs to report.

    Raises :class:`ValueError` when ``scores`` is empty or a record lacks ``"case"``, and
    :class:`FileNotFoundError` when a figure is missing.
    """
    out_dir = Path(out_dir)
    if not scores:
        raise RdclInputError("expected scores for at least one method, found none")
    for method, records in scores.items():
        if any("case" not in r for r in records):
            raise RdclInputError(f"every score record of {method!r} needs a 'case' key")
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += [
        "## Scores on the held-out cases",
        "",
        "Mean ± standard deviation (population, ddof=0) over the held-out cases; NSD at a "
        "tolerance of 3 mm. Cases where a metric is undefined (empty ground truth and prediction) "
        "are left out of its mean and the count n is shown.",
        "",
        *_score_table(scores, metrics),
        "",
        "### Per case",
        "",
        *_case_table(scores, metrics),
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        for caption, fig in figures.items():
            fig = Path(fig)
            if not fig.is_file():
                raise FileNotFoundError(f"figure {caption!r} not found: {fig}")
            rel = Path(os.path.relpath(fig.resolve(), out_dir.resolve())).as_posix()
            lines += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    if timings:
        lines += ["## Timings", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {stage} | {sec:.1f} |" for stage, sec in timings.items()]
        lines += [f"| **total** | {sum(timings.values()):.1f} |", ""]
    lines += [
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=False, default=str),
        "```",
        "",
    ]
    return write_text_atomic(out_dir / "report.md", "\n".join(lines))
