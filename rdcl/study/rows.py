"""The study's table rows (paper Tables II/III): which training method, which stage-1 network and
which non-COVID sets each row uses.

Rows: ``baseline``; ``pretrain_<set>`` (stage 1 on one non-COVID set, then fine-tune) for every
``--general`` set and ``pretrain_all`` (stage 1 on all of them, the paper's multi-lesion
pre-training); ``multi_encoder``, ``backbone``, ``rdcl_g``, ``rdcl`` (G from stage 1 on all sets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rdcl.errors import RdclInputError

ALL_GROUP = "all"
"""Name of the stage-1 run on every non-COVID set."""

DUAL_METHODS = ("multi_encoder", "backbone", "rdcl_g", "rdcl")
"""Rows that use G pre-trained on all non-COVID sets (on the one set when there is one)."""


@dataclass(frozen=True)
class StudyRow:
    """One row of the table.

    ``method`` is the ``rdcl train --method``; ``pretrain_group`` the stage-1 run it starts from
    (None: from scratch); ``general_batches`` whether stage 2 also needs the non-COVID sets.
    """

    name: str
    method: str
    pretrain_group: str | None
    general_batches: bool = False


def set_name(path: Path) -> str:
    """A short identifier of a non-COVID set folder: its name, reduced to ``[A-Za-z0-9_]``."""
    name = Path(path).name if Path(path).name else str(path)
    return re.sub(r"[^A-Za-z0-9_]+", "_", Path(name).stem if name.endswith(".npz") else name)


def study_rows(general: Sequence[Path], wanted: Sequence[str] | None = None) -> list[StudyRow]:
    """The rows for the non-COVID sets ``general``, in table order, filtered by ``wanted``.

    ``wanted`` holds row names or ``pretrain`` (all pretrain rows); None means every row. Raises
    ValueError naming an unknown entry, or rows that need non-COVID sets when there are none.
    """
    groups = [set_name(g) for g in general]
    if len(set(groups)) != len(groups):
        raise RdclInputError(f"--general sets need distinct folder names, found {groups}")
    rows = [StudyRow("baseline", "baseline", None)]
    if general:
        rows += [StudyRow(f"pretrain_{g}", "pretrain", g) for g in groups]
        if len(groups) > 1:
            rows.append(StudyRow(f"pretrain_{ALL_GROUP}", "pretrain", ALL_GROUP))
        dual = ALL_GROUP if len(groups) > 1 else groups[0]  # one set: its own stage 1
        rows += [StudyRow(m, m, dual, m in ("rdcl_g", "rdcl")) for m in DUAL_METHODS]
    if wanted is None:
        return rows
    by_name = {r.name: r for r in rows}
    chosen: list[str] = []
    for w in wanted:
        if w == "pretrain":
            chosen += [r.name for r in rows if r.method == "pretrain"]
        elif w in by_name:
            chosen.append(w)
        else:
            need = " (needs --general sets)" if not general and w != "baseline" else ""
            raise RdclInputError(
                f"unknown method {w!r}{need}; expected one of {[*by_name, 'pretrain']}"
            )
    keep = set(chosen)
    return [r for r in rows if r.name in keep]


def group_sets(group: str, general: Sequence[Path]) -> list[Path]:
    """The non-COVID set folders of a stage-1 group (one set, or all for :data:`ALL_GROUP`)."""
    if group == ALL_GROUP or len(general) == 1:
        return list(general)
    return [g for g in general if set_name(g) == group]
