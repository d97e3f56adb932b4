"""The paper's table format (Tables II/III) from per-case cross-validation scores, as Markdown,
CSV and JSON, plus the paired comparison of every method against the baseline.

Input: per-case score rows ``{"method", "fold", "case", "dsc", "nsd"}`` (one per method, fold and
test case). Per fold: mean +- std over that fold's test cases; pooled: mean +- std over all test
cases of all folds (population std, NaN scores left out, as ``rdcl evaluate`` reports them).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from rdcl.fsutil import write_text_atomic
from rdcl.report.summary import mean_std

from .stats import PairedComparison, paired_comparison

METRICS: tuple[tuple[str, str], ...] = (("dsc", "DSC"), ("nsd", "NSD"))
"""(score key, column title) of the table's metrics; NSD at the study's tolerance (3 mm)."""

BASELINE = "baseline"
"""The method every other one is compared with."""


def _methods(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(str(r["method"]) for r in rows))


def _folds(rows: Sequence[Mapping]) -> list[int]:
    return sorted({int(r["fold"]) for r in rows})


def summary_table(rows: Sequence[Mapping]) -> dict:
    """Per method: ``{"folds": {fold: {metric: {mean, std, n}}}, "all": {metric: {...}}}``."""
    out: dict = {}
    for method in _methods(rows):
        mine = [r for r in rows if r["method"] == method]
        entry: dict = {"folds": {}, "all": {}}
        for fold in _folds(mine):
            cases = [r for r in mine if int(r["fold"]) == fold]
            entry["folds"][fold] = {k: _stat(cases, k) for k, _ in METRICS}
        entry["all"] = {k: _stat(mine, k) for k, _ in METRICS}
        out[method] = entry
    return out


def _stat(rows: Sequence[Mapping], key: str) -> dict:
    mean, std, n = mean_std([float(r[key]) for r in rows])
    return {"mean": mean, "std": std, "n": n}


def _per_case(mine: Mapping, base: Mapping, key: str) -> tuple[list[float], list[float]]:
    """Method and baseline scores per case, each the mean over the folds in which both tested
    the case (NaN scores left out of the mean; NaN when a case has none)."""
    cases: dict[str, list[tuple[float, float]]] = {}
    for fold_case in sorted(set(mine) & set(base)):
        pair = (float(mine[fold_case][key]), float(base[fold_case][key]))
        cases.setdefault(fold_case[1], []).append(pair)
    a, b = [], []
    for pairs in cases.values():
        kept = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
        a.append(sum(x for x, _ in kept) / len(kept) if kept else math.nan)
        b.append(sum(y for _, y in kept) / len(kept) if kept else math.nan)
    return a, b


def comparisons(rows: Sequence[Mapping], **options) -> dict[str, dict[str, PairedComparison]]:
    """``{method: {metric: PairedComparison}}`` of every method but the baseline against the
    baseline, paired by case; ``options`` go to :func:`paired_comparison`. Empty without baseline
    rows. The unit is the case: a case tested in several folds (every case of a K-fold split with
    few training cases is) counts once, with both methods' scores averaged over the folds in
    which both tested it, so the test does not count one case's repeats as independent samples."""
    base = {(int(r["fold"]), r["case"]): r for r in rows if r["method"] == BASELINE}
    if not base:
        return {}
    out: dict[str, dict[str, PairedComparison]] = {}
    for method in _methods(rows):
        if method == BASELINE:
            continue
        mine = {(int(r["fold"]), r["case"]): r for r in rows if r["method"] == method}
        out[method] = {
            k: paired_comparison(*_per_case(mine, base, k), **options) for k, _ in METRICS
        }
    return out


def _cell(stat: Mapping) -> str:
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def markdown(
    summary: Mapping, comps: Mapping[str, Mapping[str, PairedComparison]], *, tolerance_mm: float
) -> str:
    """The Markdown tables: per-fold and pooled DSC/NSD, then the paired comparisons."""
    folds = sorted({f for e in summary.values() for f in e["folds"]})
    nsd = f"NSD@{tolerance_mm:g}mm"
    title = {"dsc": "DSC", "nsd": nsd}
    head = ["method", *(f"fold {f + 1} {title[k]}" for f in folds for k, _ in METRICS)]
    head += [f"all {title[k]}" for k, _ in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in summary.items():
        cells = [method]
        for f in folds:
            stats = entry["folds"].get(f)
            cells += [_cell(stats[k]) if stats else "-" for k, _ in METRICS]
        cells += [f"**{_cell(entry['all'][k])}**" for k, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    n_all = {m: e["all"]["dsc"]["n"] for m, e in summary.items()}
    lines += ["", f"Mean ± std (population) over each fold's test cases; 'all' pools every test "
              f"case of every fold (cases with a DSC per method: {n_all})."]  # fmt: skip
    if comps:
        lines += [
            "",
            f"Paired per-case comparison with `{BASELINE}` (difference = method - baseline; a "
            "case tested in several folds counts once, its scores averaged over them; bootstrap "
            "95% interval of the mean difference, wins/ties/losses, two-sided Wilcoxon "
            "signed-rank p):",
            "",
            "| method | metric | n | mean diff [95% CI] | wins/ties/losses | Wilcoxon p |",
            "|---|---|---|---|---|---|",
        ]
        for method, per_metric in comps.items():
            for key, c in per_metric.items():
                ci = f"{c.mean_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" if c.n else "n/a"
                lines.append(
                    f"| {method} | {title[key]} | {c.n} | {ci} | {c.wins}/{c.ties}/{c.losses} "
                    f"| {_p(c.p_wilcoxon)} |"
                )
    return "\n".join(lines) + "\n"


def summary_csv(summary: Mapping) -> str:
    """Long-format CSV: ``method,fold,metric,mean,std,n`` (fold ``all`` = pooled; folds 1-based)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "fold", "metric", "mean", "std", "n"])
    for method, entry in summary.items():
        parts = [(str(f + 1), s) for f, s in sorted(entry["folds"].items())]
        for fold, stats in [*parts, ("all", entry["all"])]:
            for key, _ in METRICS:
                s = stats[key]
                w.writerow([method, fold, key, repr(s["mean"]), repr(s["std"]), s["n"]])
    return buf.getvalue()


def comparisons_csv(comps: Mapping[str, Mapping[str, PairedComparison]]) -> str:
    """CSV of the paired comparisons: one row per method and metric."""
    buf = io.StringIO()
    fields = list(PairedComparison.__dataclass_fields__)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "metric", *fields])
    for method, per_metric in comps.items():
        for key, c in per_metric.items():
            w.writerow([method, key, *(getattr(c, f) for f in fields)])
    return buf.getvalue()


def cases_csv(rows: Sequence[Mapping]) -> str:
    """Every per-case score row: ``method,fold,case,dsc,nsd`` (fold 1-based)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "fold", "case", *(k for k, _ in METRICS)])
    for r in rows:
        scores = [repr(float(r[k])) for k, _ in METRICS]
        w.writerow([r["method"], int(r["fold"]) + 1, r["case"], *scores])
    return buf.getvalue()


def write_tables(rows: Sequence[Mapping], out_dir: str | Path, *, tolerance_mm: float) -> dict:
    """Write ``results.md``, ``results.csv``, ``comparison.csv``, ``cases.csv`` and
    ``results.json`` into ``out_dir`` (atomically); returns the JSON payload."""
    out_dir = Path(out_dir)
    summary = summary_table(rows)
    comps = comparisons(rows)
    write_text_atomic(out_dir / "results.md", markdown(summary, comps, tolerance_mm=tolerance_mm))
    write_text_atomic(out_dir / "results.csv", summary_csv(summary))
    write_text_atomic(out_dir / "comparison.csv", comparisons_csv(comps))
    write_text_atomic(out_dir / "cases.csv", cases_csv(rows))
    payload = {
        "tolerance_mm": tolerance_mm,
        "summary": {
            m: {"folds": {str(f + 1): s for f, s in e["folds"].items()}, "all": e["all"]}
            for m, e in summary.items()
        },
        "comparison": {m: {k: c.to_dict() for k, c in pm.items()} for m, pm in comps.items()},
    }
    write_text_atomic(
        out_dir / "results.json", json.dumps(payload, indent=1, allow_nan=True) + "\n"
    )
    return payload
