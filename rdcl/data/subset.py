"""A dataset restricted to named cases (one fold's training or test cases), without copying data."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from rdcl.data.spec import DatasetError, DatasetSpec


def select_cases(spec: DatasetSpec, names: Sequence[str]) -> DatasetSpec:
    """``spec`` with only the cases called ``names`` (in the dataset's order).

    The subset gets the name ``<dataset>@<8 hex digits of the names' hash>``, so preprocessing
    caches of different subsets of one dataset never share a folder. Raises
    :class:`~rdcl.data.spec.DatasetError` naming the first unknown case (and an example of the
    dataset's names) when a name is not in ``spec``, or when ``names`` is empty.
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
