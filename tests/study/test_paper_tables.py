"""The paper's table format (rdcl.study.paper_tables)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from rdcl.study.paper_tables import markdown, summary_table, write_tables


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for method, shift in (("baseline", 0.0), ("rdcl", 0.05)):
        for fold in range(2):
            for i in range(4):
                dsc = 0.6 + 0.05 * i + shift + 0.01 * fold
                rows.append({"method": method, "fold": fold, "case": f"c{fold}{i}", "dsc": dsc,
                             "nsd": float(rng.uniform(0.5, 0.9))})  # fmt: skip
    for method in ("rdcl", "baseline"):  # a case whose masks are both empty: no DSC/NSD
        rows.append(
            {"method": method, "fold": 1, "case": "empty", "dsc": math.nan, "nsd": math.nan}
        )
    return rows


def test_summary_per_fold_and_pooled():
    rows = _rows()
    s = summary_table(rows)
    base = [r["dsc"] for r in rows if r["method"] == "baseline" and r["fold"] == 0]
    assert s["baseline"]["folds"][0]["dsc"]["mean"] == pytest.approx(np.mean(base))
    assert s["baseline"]["folds"][0]["dsc"]["std"] == pytest.approx(np.std(base))
    pooled = [r["dsc"] for r in rows if r["method"] == "rdcl" and np.isfinite(r["dsc"])]
    assert s["rdcl"]["all"]["dsc"]["mean"] == pytest.approx(np.mean(pooled))
    assert s["rdcl"]["all"]["dsc"]["n"] == 8  # the NaN case is left out


def test_markdown_layout():
    rows = _rows()
    text = markdown(summary_table(rows), {}, tolerance_mm=3.0)
    lines = text.splitlines()
    assert lines[0] == (
        "| method | fold 1 DSC | fold 1 NSD@3mm | fold 2 DSC | fold 2 NSD@3mm | all DSC | "
        "all NSD@3mm |"
    )
    base = next(ln for ln in lines if ln.startswith("| baseline |"))
    cells = [c.strip() for c in base.strip("|").split("|")]
    assert len(cells) == 7
    assert cells[1] == "0.675 ± 0.056"  # fold 1: 0.60, 0.65, 0.70, 0.75
    assert cells[5].startswith("**") and "±" in cells[5]


def test_write_tables_files(tmp_path):
    payload = write_tables(_rows(), tmp_path, tolerance_mm=3.0)
    for name in ("results.md", "results.csv", "results.json", "comparison.csv", "cases.csv"):
        assert (tmp_path / name).is_file()
    md = (tmp_path / "results.md").read_text()
    assert (
        "| rdcl | baseline | DSC | 9 |" not in md and "| rdcl | baseline | DSC | 8 | +0.050" in md
    )
    assert "8/0/0" in md  # rdcl wins every DSC pair by 0.05
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["fold"] for r in rows} == {"1", "2", "all"}
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(payload))
    comp = next(c for c in payload["comparison"]["case"] if c["metric"] == "dsc")
    assert (comp["method"], comp["reference"]) == ("rdcl", "baseline")
    assert comp["wins"] == 8 and comp["mean_diff"] == pytest.approx(0.05)
    # run level: the two folds are the two units; rdcl is 0.05 ahead in both
    run = next(c for c in payload["comparison"]["run"] if c["metric"] == "dsc")
    assert run["n"] == 2 and run["mean_diff"] == pytest.approx(0.05) and run["interval"] == "t"
    with open(tmp_path / "cases.csv") as fh:
        cases = list(csv.DictReader(fh))
    assert len(cases) == 18 and {r["seed"] for r in cases} == {""}  # hand-made rows: no seed


def test_comparison_counts_a_case_tested_in_several_folds_once():
    from rdcl.study.paper_tables import comparisons

    # case "a" is tested in folds 0 and 1, case "b" in fold 1 only: 2 paired cases, not 3
    rows = [
        {"method": "baseline", "fold": 0, "case": "a", "dsc": 0.5, "nsd": 0.5},
        {"method": "baseline", "fold": 1, "case": "a", "dsc": 0.7, "nsd": 0.5},
        {"method": "baseline", "fold": 1, "case": "b", "dsc": 0.4, "nsd": 0.5},
        {"method": "rdcl", "fold": 0, "case": "a", "dsc": 0.6, "nsd": math.nan},
        {"method": "rdcl", "fold": 1, "case": "a", "dsc": 0.9, "nsd": 0.6},
        {"method": "rdcl", "fold": 1, "case": "b", "dsc": 0.3, "nsd": math.nan},
    ]
    c = comparisons(rows)[("rdcl", "baseline")]
    assert c["dsc"].n == 2 and (c["dsc"].wins, c["dsc"].losses) == (1, 1)
    # a: mean(0.6, 0.9) - mean(0.5, 0.7) = +0.15; b: 0.3 - 0.4 = -0.1
    assert c["dsc"].mean_diff == pytest.approx((0.15 - 0.1) / 2)
    # NSD: a's fold-0 pair has a NaN, so a is averaged over fold 1 only; b has no finite pair
    assert c["nsd"].n == 1 and c["nsd"].mean_diff == pytest.approx(0.1)


def _seeded_rows():
    """2 folds x 2 seeds of baseline and rdcl, backbone with seed 0 only; 2 test cases a run.
    rdcl's run score is baseline's + 0.01 * (1 + fold + 2 * seed): unit differences 0.01, 0.02,
    0.03, 0.04 for (fold, seed) = (0, 0), (1, 0), (0, 1), (1, 1)."""
    rows = []
    for fold in (0, 1):
        for seed in (0, 1):
            for i, case in enumerate(("a", "b") if fold == 0 else ("b", "c")):
                base = 0.5 + 0.1 * i + 0.02 * seed
                scores = {"baseline": base, "rdcl": base + 0.01 * (1 + fold + 2 * seed)}
                if seed == 0:
                    scores["backbone"] = base + 0.005
                for method, dsc in scores.items():
                    rows.append({"method": method, "fold": fold, "seed": seed, "case": case,
                                 "dsc": dsc, "nsd": dsc - 0.1})  # fmt: skip
    return rows


def test_run_level_units_pair_by_fold_and_seed():
    import scipy.stats

    from rdcl.study.paper_tables import contrasts, run_comparisons, unit_scores

    rows = _seeded_rows()
    units = unit_scores(rows)
    assert sorted(units["rdcl"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(units["backbone"]) == [(0, 0), (1, 0)]
    assert units["baseline"][(0, 1)]["dsc"] == pytest.approx(0.57)  # mean of 0.52 and 0.62
    assert contrasts(list(units)) == [
        ("rdcl", "baseline"), ("backbone", "baseline"), ("rdcl", "backbone"),
    ]  # fmt: skip
    comps = run_comparisons(rows)
    c = comps[("rdcl", "baseline")]["dsc"]
    d = [0.01, 0.03, 0.02, 0.04]  # units (0,0), (0,1), (1,0), (1,1)
    assert c.n == 4 and c.mean_diff == pytest.approx(0.025) and c.wins == 4
    ref = scipy.stats.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)
    assert c.p_ttest == pytest.approx(ref.pvalue, rel=1e-6)
    assert c.p_wilcoxon == pytest.approx(2 / 16)  # exact: all 4 positive, P(W- = 0) = 1/16
    # rdcl - backbone: only the seed-0 units both have (differences 0.005 and 0.015)
    rb = comps[("rdcl", "backbone")]["dsc"]
    assert rb.n == 2 and rb.mean_diff == pytest.approx(0.01)
    assert rb.ci_low == pytest.approx(0.01 - 12.706204736 * 0.005, rel=1e-6)  # t_{0.975, 1}


def test_per_case_analysis_groups_repeats_over_folds_and_seeds():
    from rdcl.study.paper_tables import comparisons

    rows = _seeded_rows()
    c = comparisons(rows)[("rdcl", "baseline")]["dsc"]
    # three cases, each counted once: a (fold 0, seeds 0 and 1), b (both folds and seeds), c
    assert c.n == 3 and c.wins == 3
    a, b, cc = (0.01 + 0.03) / 2, (0.01 + 0.03 + 0.02 + 0.04) / 4, (0.02 + 0.04) / 2
    assert c.mean_diff == pytest.approx((a + b + cc) / 3)


def test_seeded_tables_have_a_seed_column_and_run_level_first(tmp_path):
    payload = write_tables(_seeded_rows(), tmp_path, tolerance_mm=3.0)
    with open(tmp_path / "cases.csv") as fh:
        cases = list(csv.DictReader(fh))
    assert list(cases[0]) == ["method", "fold", "seed", "case", "dsc", "nsd"]
    assert {r["seed"] for r in cases} == {"0", "1"}
    with open(tmp_path / "units.csv") as fh:
        units = list(csv.DictReader(fh))
    assert len(units) == 4 + 4 + 2 and units[0]["n"] == "2"
    with open(tmp_path / "comparison.csv") as fh:
        comp = list(csv.DictReader(fh))
    analyses = [r["analysis"] for r in comp]
    assert analyses == ["run"] * 6 + ["case"] * 6  # 3 contrasts x 2 metrics each
    assert {(r["method"], r["reference"]) for r in comp} == {
        ("rdcl", "baseline"), ("backbone", "baseline"), ("rdcl", "backbone"),
    }  # fmt: skip
    assert comp[0]["interval"] == "t" and comp[-1]["interval"] == "bootstrap"
    md = (tmp_path / "results.md").read_text()
    assert md.index("Run-level analysis (primary)") < md.index("Per-case analysis (secondary)")
    assert "| rdcl | backbone | DSC | 2 | +0.010" in md
    assert "| rdcl | 4 | 0, 1 |" in md and "| backbone | 2 | 0 |" in md
    assert len(payload["units"]) == 10 and len(payload["comparison"]["run"]) == 6
