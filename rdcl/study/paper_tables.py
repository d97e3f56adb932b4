"""The paper's table format (Tables II/III) from per-case cross-validation scores, as Markdown,
CSV and JSON, plus the paired comparisons of the methods.

Input: per-case score rows ``{"method", "fold", "seed", "case", "dsc", "nsd"}`` (one per method,
fold, training seed and test case; rows without ``"seed"`` count as one seed). Per fold: mean +-
std over that fold's test cases (of every seed); pooled: mean +- std over all of them (population
std, NaN scores left out, as ``rdcl evaluate`` reports them).

Two paired analyses, each for every method against ``baseline`` and for ``rdcl`` against
``backbone`` (:func:`contrasts`):

1. Run level (primary, :func:`run_comparisons`): each (fold, seed) training run is one unit, its
   score the mean over its test cases; units of the two methods with the same fold and seed are
   paired (:func:`rdcl.study.stats.run_level_comparison`: t-interval, Wilcoxon and t-test p).
2. Case level (secondary, :func:`comparisons`): each test case is one unit, its score averaged
   over every (fold, seed) in which both methods tested it, so repeats of a case are not counted
   as independent samples (bootstrap interval, Wilcoxon p).
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

from .stats import PairedComparison, paired_comparison, run_level_comparison

METRICS: tuple[tuple[str, str], ...] = (("dsc", "DSC"), ("nsd", "NSD"))
"""(score key, column title) of the table's metrics; NSD at the study's tolerance (3 mm)."""

BASELINE = "baseline"
"""The method every other one is compared with."""

EXTRA_CONTRASTS: tuple[tuple[str, str], ...] = (("rdcl", "backbone"),)
"""(method, reference) pairs compared besides every method against :data:`BASELINE`: rdcl
against the same dual encoder without the relation terms (issue 17)."""

Contrast = tuple[str, str]
"""(method, reference): the difference is method - reference."""


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


def _seed(row: Mapping) -> int | None:
    seed = row.get("seed")
    return None if seed is None or seed == "" else int(seed)


def _unit_key(row: Mapping) -> tuple[int, int | None]:
    """The training run a score row comes from: (fold, seed)."""
    return int(row["fold"]), _seed(row)


def contrasts(methods: Sequence[str]) -> list[Contrast]:
    """The (method, reference) pairs compared among ``methods``: every method against
    :data:`BASELINE`, then :data:`EXTRA_CONTRASTS` whose two methods are both present."""
    present = set(methods)
    out: list[Contrast] = []
    if BASELINE in present:
        out += [(m, BASELINE) for m in methods if m != BASELINE]
    out += [(m, r) for m, r in EXTRA_CONTRASTS if m in present and r in present]
    return list(dict.fromkeys(out))


def unit_scores(rows: Sequence[Mapping]) -> dict[str, dict[tuple[int, int | None], dict]]:
    """``{method: {(fold, seed): {"n": cases, metric: mean}}}``: each training run's score, the
    mean over its test cases (NaN scores left out; NaN when none is finite)."""
    out: dict[str, dict[tuple[int, int | None], dict]] = {}
    grouped: dict[tuple[str, tuple[int, int | None]], list[Mapping]] = {}
    for r in rows:
        grouped.setdefault((str(r["method"]), _unit_key(r)), []).append(r)
    for (method, unit), mine in sorted(grouped.items(), key=lambda kv: _sort_unit(kv[0][1])):
        entry: dict = {"n": len(mine)}
        for key, _ in METRICS:
            values = [float(r[key]) for r in mine if math.isfinite(float(r[key]))]
            entry[key] = sum(values) / len(values) if values else math.nan
        out.setdefault(method, {})[unit] = entry
    return {m: out[m] for m in _methods(rows) if m in out}


def _sort_unit(unit: tuple[int, int | None]) -> tuple[int, int]:
    return unit[0], -1 if unit[1] is None else unit[1]


def run_comparisons(
    rows: Sequence[Mapping], *, level: float = 0.95
) -> dict[Contrast, dict[str, PairedComparison]]:
    """The primary analysis: ``{(method, reference): {metric: PairedComparison}}`` for every
    :func:`contrasts` pair, over the training runs (fold, seed) both methods finished
    (:func:`rdcl.study.stats.run_level_comparison` on the :func:`unit_scores`)."""
    units = unit_scores(rows)
    out: dict[Contrast, dict[str, PairedComparison]] = {}
    for method, ref in contrasts(list(units)):
        shared = sorted(set(units[method]) & set(units[ref]), key=_sort_unit)
        out[(method, ref)] = {
            k: run_level_comparison(
                [units[method][u][k] for u in shared],
                [units[ref][u][k] for u in shared],
                level=level,
            )
            for k, _ in METRICS
        }
    return out


def _per_case(mine: Mapping, base: Mapping, key: str) -> tuple[list[float], list[float]]:
    """Method and reference scores per case, each the mean over the (fold, seed) runs in which
    both tested the case (NaN scores left out of the mean; NaN when a case has none)."""
    cases: dict[str, list[tuple[float, float]]] = {}
    for unit_case in sorted(set(mine) & set(base), key=lambda u: (*_sort_unit(u[:2]), u[2])):
        pair = (float(mine[unit_case][key]), float(base[unit_case][key]))
        cases.setdefault(unit_case[2], []).append(pair)
    a, b = [], []
    for pairs in cases.values():
        kept = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
        a.append(sum(x for x, _ in kept) / len(kept) if kept else math.nan)
        b.append(sum(y for _, y in kept) / len(kept) if kept else math.nan)
    return a, b


def comparisons(rows: Sequence[Mapping], **options) -> dict[Contrast, dict[str, PairedComparison]]:
    """The secondary analysis: ``{(method, reference): {metric: PairedComparison}}`` for every
    :func:`contrasts` pair, paired by case; ``options`` go to :func:`paired_comparison`. Empty
    without baseline rows. The unit is the case: a case tested in several folds or seeds (every
    case of a K-fold split with few training cases is) counts once, with both methods' scores
    averaged over the (fold, seed) runs in which both tested it, so the test does not count one
    case's repeats as independent samples. Empty when no contrast's two methods are present."""
    by_method: dict[str, dict] = {}
    for r in rows:
        by_method.setdefault(str(r["method"]), {})[(*_unit_key(r), str(r["case"]))] = r
    return {
        (method, ref): {
            k: paired_comparison(*_per_case(by_method[method], by_method[ref], k), **options)
            for k, _ in METRICS
        }
        for method, ref in contrasts(_methods(rows))
    }


def _cell(stat: Mapping) -> str:
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _fmt_diff(c: PairedComparison) -> str:
    if not c.n:
        return "n/a"
    if not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return f"{c.mean_diff:+.3f} [n/a]"
    return f"{c.mean_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"


def _units_markdown(units: Mapping[str, Mapping], title: Mapping[str, str]) -> list[str]:
    """Per method: how many runs, their seeds, and the mean +- std (sample) of the run scores."""
    head = ["method", "runs", "seeds", *(f"{title[k]} over runs" for k, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, per_unit in units.items():
        seeds = sorted({u[1] for u in per_unit if u[1] is not None})
        cells = [method, str(len(per_unit)), ", ".join(map(str, seeds)) or "-"]
        for key, _ in METRICS:
            v = [e[key] for e in per_unit.values() if math.isfinite(e[key])]
            if not v:
                cells.append("n/a")
                continue
            mean = sum(v) / len(v)
            sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            cells.append(f"{mean:.3f} ± {sd:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(
    summary: Mapping,
    comps: Mapping[Contrast, Mapping[str, PairedComparison]],
    *,
    tolerance_mm: float,
    run_comps: Mapping[Contrast, Mapping[str, PairedComparison]] | None = None,
    units: Mapping[str, Mapping] | None = None,
) -> str:
    """The Markdown tables: per-fold and pooled DSC/NSD; then the run-level analysis (the run
    scores ``units`` of :func:`unit_scores` and the comparisons ``run_comps`` of
    :func:`run_comparisons`), then the per-case comparisons ``comps`` of :func:`comparisons`."""
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
    lines += ["", f"Mean ± std (population) over each fold's test cases (of every seed run); "
              f"'all' pools every test case of every fold and seed (scores with a DSC per "
              f"method: {n_all})."]  # fmt: skip
    if units:
        lines += ["", "## Run-level analysis (primary)", "",
                  "Each training run, a (fold, seed), is one unit; its score is the mean over "
                  "its test cases. Mean ± std (sample) of the run scores:", "",
                  *_units_markdown(units, title)]  # fmt: skip
    if run_comps:
        level = next(iter(next(iter(run_comps.values())).values())).level
        lines += [
            "",
            "Paired by run (the two methods' runs of the same fold and seed; difference = "
            f"method - reference; runs only one method finished are left out): mean difference "
            f"with its {level:.0%} t-interval over the runs (which treats the runs as "
            "independent, though runs of one fold share their cases), wins/ties/losses over "
            "the runs, two-sided Wilcoxon signed-rank p (scipy, exact when no differences "
            "tie) and paired t-test p:",
            "",
            f"| method | reference | metric | runs | mean diff [{level:.0%} t-CI] "
            "| wins/ties/losses | Wilcoxon p | t-test p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (method, ref), per_metric in run_comps.items():
            for key, c in per_metric.items():
                lines.append(
                    f"| {method} | {ref} | {title[key]} | {c.n} | {_fmt_diff(c)} "
                    f"| {c.wins}/{c.ties}/{c.losses} | {_p(c.p_wilcoxon)} | {_p(c.p_ttest)} |"
                )
    if comps:
        if units or run_comps:
            lines += ["", "## Per-case analysis (secondary)"]
        lines += [
            "",
            "Paired per-case comparison (difference = method - reference; a case tested in "
            "several folds or seeds counts once, its scores averaged over the runs in which "
            "both methods tested it; bootstrap 95% interval of the mean difference, "
            "wins/ties/losses, two-sided Wilcoxon signed-rank p):",
            "",
            "| method | reference | metric | n | mean diff [95% CI] | wins/ties/losses "
            "| Wilcoxon p |",
            "|---|---|---|---|---|---|---|",
        ]
        for (method, ref), per_metric in comps.items():
            for key, c in per_metric.items():
                lines.append(
                    f"| {method} | {ref} | {title[key]} | {c.n} | {_fmt_diff(c)} "
                    f"| {c.wins}/{c.ties}/{c.losses} | {_p(c.p_wilcoxon)} |"
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


COMPARISON_FIELDS = tuple(PairedComparison.__dataclass_fields__)
"""Statistics columns of ``comparison.csv`` (after analysis, method, reference, metric)."""


def comparisons_csv(
    run_comps: Mapping[Contrast, Mapping[str, PairedComparison]],
    case_comps: Mapping[Contrast, Mapping[str, PairedComparison]],
) -> str:
    """CSV of the paired comparisons, one row per analysis, contrast and metric: the run-level
    rows first (``analysis`` = ``run``), then the per-case ones (``case``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["analysis", "method", "reference", "metric", *COMPARISON_FIELDS])
    for analysis, comps in (("run", run_comps), ("case", case_comps)):
        for (method, ref), per_metric in comps.items():
            for key, c in per_metric.items():
                w.writerow(
                    [analysis, method, ref, key, *(getattr(c, f) for f in COMPARISON_FIELDS)]
                )
    return buf.getvalue()


def _seed_cell(seed: int | None) -> str:
    return "" if seed is None else str(seed)


def units_csv(units: Mapping[str, Mapping]) -> str:
    """Every training run's score: ``method,fold,seed,n,dsc,nsd`` (fold 1-based; ``n`` test
    cases; the scores are the means over them)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "fold", "seed", "n", *(k for k, _ in METRICS)])
    for method, per_unit in units.items():
        for (fold, seed), e in per_unit.items():
            scores = [repr(float(e[k])) for k, _ in METRICS]
            w.writerow([method, fold + 1, _seed_cell(seed), e["n"], *scores])
    return buf.getvalue()


def cases_csv(rows: Sequence[Mapping]) -> str:
    """Every per-case score row: ``method,fold,seed,case,dsc,nsd`` (fold 1-based; seed empty for
    rows without one)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "fold", "seed", "case", *(k for k, _ in METRICS)])
    for r in rows:
        scores = [repr(float(r[k])) for k, _ in METRICS]
        w.writerow([r["method"], int(r["fold"]) + 1, _seed_cell(_seed(r)), r["case"], *scores])
    return buf.getvalue()


def _comparison_records(
    comps: Mapping[Contrast, Mapping[str, PairedComparison]],
) -> list[dict]:
    return [
        {"method": method, "reference": ref, "metric": key, **c.to_dict()}
        for (method, ref), per_metric in comps.items()
        for key, c in per_metric.items()
    ]


def write_tables(rows: Sequence[Mapping], out_dir: str | Path, *, tolerance_mm: float) -> dict:
    """Write ``results.md``, ``results.csv``, ``comparison.csv``, ``units.csv``, ``cases.csv``
    and ``results.json`` into ``out_dir`` (atomically); returns the JSON payload."""
    out_dir = Path(out_dir)
    summary = summary_table(rows)
    units = unit_scores(rows)
    run_comps = run_comparisons(rows)
    comps = comparisons(rows)
    write_text_atomic(
        out_dir / "results.md",
        markdown(summary, comps, tolerance_mm=tolerance_mm, run_comps=run_comps, units=units),
    )
    write_text_atomic(out_dir / "results.csv", summary_csv(summary))
    write_text_atomic(out_dir / "comparison.csv", comparisons_csv(run_comps, comps))
    write_text_atomic(out_dir / "units.csv", units_csv(units))
    write_text_atomic(out_dir / "cases.csv", cases_csv(rows))
    payload = {
        "tolerance_mm": tolerance_mm,
        "summary": {
            m: {"folds": {str(f + 1): s for f, s in e["folds"].items()}, "all": e["all"]}
            for m, e in summary.items()
        },
        "units": [
            {"method": m, "fold": f + 1, "seed": seed, **e}
            for m, per_unit in units.items()
            for (f, seed), e in per_unit.items()
        ],
        "comparison": {
            "run": _comparison_records(run_comps),
            "case": _comparison_records(comps),
        },
    }
    write_text_atomic(
        out_dir / "results.json", json.dumps(payload, indent=1, allow_nan=True) + "\n"
    )
    return payload
