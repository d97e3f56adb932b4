"""Split files and seeded splits (rdcl.study.splits), the case subset and case lists
(rdcl.data.datasets.subset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdcl.data.datasets.spec import Case, DatasetError, DatasetSpec
from rdcl.data.datasets.subset import read_case_list, select_cases, write_case_list
from rdcl.study.splits import (
    SplitError,
    check_split,
    make_split,
    read_split,
    write_split,
)

OFFICIAL = Path(__file__).resolve().parents[3] / "shared" / "splits" / "covid19_ct_seg_task1.json"


def test_seeded_split_is_disjoint_deterministic_and_covers_the_rest():
    names = [f"case_{i:03d}" for i in range(80)]
    split = make_split(names, 5, 16, seed=3)
    assert split == make_split(list(reversed(names)), 5, 16, seed=3)
    assert split != make_split(names, 5, 16, seed=4)
    trains = [set(f.train) for f in split.folds]
    assert all(len(t) == 16 for t in trains)
    assert len(set().union(*trains)) == 80  # 5 disjoint training sets of 16 cover all 80 cases
    for fold in split.folds:
        assert set(fold.test) == set(names) - set(fold.train)


def test_seeded_split_refuses_too_few_cases():
    with pytest.raises(SplitError, match="10 cases"):
        make_split([f"c{i}" for i in range(10)], 5, 3)
    with pytest.raises(SplitError, match=">= 1"):
        make_split(["a", "b"], 0, 1)


def test_split_round_trip_and_validation(tmp_path):
    split = make_split(["a", "b", "c", "d"], 2, 1, seed=0)
    path = write_split(split, tmp_path / "split.json")
    assert read_split(path) == split
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"folds": [{"train": ["a"], "test": ["a", "b"]}]}))
    with pytest.raises(SplitError, match="same cases"):
        read_split(bad)
    bad.write_text(json.dumps({"folds": []}))
    with pytest.raises(SplitError, match="non-empty 'folds'"):
        read_split(bad)
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="cannot parse"):
        read_split(bad)
    with pytest.raises(SplitError, match="not in the dataset"):
        check_split(split, ["a", "b", "c"])


@pytest.mark.skipif(not OFFICIAL.is_file(), reason="../shared/splits is absent")
def test_official_task1_split_has_5_folds_of_4_and_16():
    split = read_split(OFFICIAL)
    assert len(split.folds) == 5
    assert all(len(f.train) == 4 and len(f.test) == 16 for f in split.folds)
    trained = [n for f in split.folds for n in f.train]
    assert len(set(trained)) == 20  # every case trains in exactly one fold
    assert {"coronacases_001", "radiopaedia_4_85506_1"} <= set(trained)


def test_case_list_text_and_json(tmp_path):
    write_case_list(["x", "y"], tmp_path / "a.txt")
    assert read_case_list(tmp_path / "a.txt") == ["x", "y"]
    (tmp_path / "b.json").write_text('["p", "q"]')
    assert read_case_list(tmp_path / "b.json") == ["p", "q"]
    (tmp_path / "c.txt").write_text("# only a comment\n\n")
    with pytest.raises(DatasetError, match="at least one"):
        read_case_list(tmp_path / "c.txt")


def test_select_cases_keeps_order_and_names_the_subset():
    cases = tuple(Case(n, Path(f"/x/{n}.nii.gz"), None) for n in ("a", "b", "c"))
    spec = DatasetSpec("ds", Path("/x"), cases, 2, None)
    sub = select_cases(spec, ["c", "a"])
    assert [c.name for c in sub.cases] == ["a", "c"]
    assert sub.name.startswith("ds@") and sub.name != select_cases(spec, ["a"]).name
    with pytest.raises(DatasetError, match="'zz'"):
        select_cases(spec, ["a", "zz"])
