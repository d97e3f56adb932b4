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
    assert "| rdcl | DSC | 9 |" not in md and "| rdcl | DSC | 8 | +0.050" in md
    assert "8/0/0" in md  # rdcl wins every DSC pair by 0.05
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["fold"] for r in rows} == {"1", "2", "all"}
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(payload))
    comp = payload["comparison"]["rdcl"]["dsc"]
    assert comp["wins"] == 8 and comp["mean_diff"] == pytest.approx(0.05)
    with open(tmp_path / "cases.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 18


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
    c = comparisons(rows)["rdcl"]
    assert c["dsc"].n == 2 and (c["dsc"].wins, c["dsc"].losses) == (1, 1)
    # a: mean(0.6, 0.9) - mean(0.5, 0.7) = +0.15; b: 0.3 - 0.4 = -0.1
    assert c["dsc"].mean_diff == pytest.approx((0.15 - 0.1) / 2)
    # NSD: a's fold-0 pair has a NaN, so a is averaged over fold 1 only; b has no finite pair
    assert c["nsd"].n == 1 and c["nsd"].mean_diff == pytest.approx(0.1)
