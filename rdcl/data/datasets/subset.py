"""A dataset restricted to named cases (one fold's training or test cases), without copying data,
and case-list files (``rdcl train --cases FILE``, a study's ``folds/fold_K/{train,test}.txt``).

A case list is a text file with one case name per line (``#`` starts a comment) or a JSON list of
names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from rdcl.data.datasets.spec import DatasetError, DatasetSpec
from rdcl.fsutil import write_text_atomic


def select_cases(spec: DatasetSpec, names: Sequence[str]) -> DatasetSpec:
    """``spec`` with only the cases called ``names`` (in the dataset's order).

    The subset gets the name ``<dataset>@<8 hex digits of the names' hash>``, so preprocessing
    caches of different subsets of one dataset never share a folder. Raises
    :class:`~rdcl.data.datasets.spec.DatasetError` naming the first unknown case (and an example of
    the dataset's names) when a name is not in ``spec``, or when ``names`` is empty.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise DatasetError(f"expected at least one case name to select from {spec.root}")
    known = {c.name for c in spec.cases}
    missing = [n for n in wanted if n not in known]
    if missing:
        example = ", ".join(sorted(known)[:3])
        raise DatasetError(
            f"{len(missing)} case name(s) not in {spec.root}, e.g. {missing[0]!r}; "
            f"its cases are named like {example}"
        )
    chosen = set(wanted)
    digest = hashlib.sha1("\n".join(sorted(chosen)).encode()).hexdigest()[:8]
    cases = tuple(c for c in spec.cases if c.name in chosen)
    return dataclasses.replace(spec, name=f"{spec.name}@{digest}", cases=cases)


def read_case_list(path: str | Path) -> list[str]:
    """Case names from a case-list file (one per line, ``#`` comments) or a JSON list.

    Raises FileNotFoundError when ``path`` is not a file, :class:`~rdcl.errors.DatasetError`
    (one line) when it cannot be parsed or names no case.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"case list not found: {path}")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"cannot parse case list {path}: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: expected a JSON list of case names")
    else:
        names = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path}: expected at least one case name, found none")
    return names


def write_case_list(names: Sequence[str], path: str | Path) -> Path:
    """Write case names one per line, atomically (read back by :func:`read_case_list`)."""
    return write_text_atomic(path, "".join(f"{n}\n" for n in names))
