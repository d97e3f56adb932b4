"""Cross-validation splits: read a split file (the official COVID-19-CT-Seg Task-1 split), make a
seeded one, check it against a dataset's case names, and save it.

Split file format (JSON, the format of ``covid19_ct_seg_task1.json``)::

    {"source": "free text", "folds": [{"train": ["case", ...], "test": ["case", ...]}, ...]}

Case names are the dataset loader's names (``rdcl.data.load_dataset(root).cases[i].name``): for
COVID-19-CT-Seg the mask names (``coronacases_001``, ``radiopaedia_4_85506_1``), for paired folders
the image file stem (``tr_im_0001``), for nnU-Net the case identifier.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rdcl.errors import RdclInputError
from rdcl.fsutil import write_text_atomic


class SplitError(RdclInputError):
    """A split file or split request is invalid (one-line message)."""


@dataclass(frozen=True)
class Fold:
    """One fold: the case names to train on and to test on (disjoint)."""

    train: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    """A cross-validation split: its folds and where it came from."""

    folds: tuple[Fold, ...]
    source: str = ""

    def to_dict(self) -> dict:
        """The JSON form (module docstring)."""
        return {
            "source": self.source,
            "folds": [{"train": list(f.train), "test": list(f.test)} for f in self.folds],
        }


def split_from_dict(data: object, where: str = "split") -> Split:
    """Parse and validate the JSON form; raises :class:`SplitError` naming ``where``."""
    if not isinstance(data, dict) or not isinstance(data.get("folds"), list) or not data["folds"]:
        raise SplitError(
            f"{where}: expected a JSON object with a non-empty 'folds' list, found "
            f"{type(data).__name__ if not isinstance(data, dict) else sorted(data)}"
        )
    folds = []
    for i, entry in enumerate(data["folds"]):
        parts = {}
        for key in ("train", "test"):
            names = entry.get(key) if isinstance(entry, dict) else None
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) for n in names)
            ):
                raise SplitError(
                    f"{where}: fold {i} needs a non-empty list of case names under {key!r}"
                )
            if len(set(names)) != len(names):
                raise SplitError(f"{where}: fold {i} lists a case twice under {key!r}")
            parts[key] = tuple(names)
        both = sorted(set(parts["train"]) & set(parts["test"]))
        if both:
            raise SplitError(f"{where}: fold {i} trains and tests on the same cases {both[:5]}")
        folds.append(Fold(parts["train"], parts["test"]))
    return Split(tuple(folds), str(data.get("source", "")))


def read_split(path: str | Path) -> Split:
    """Read a split file; raises :class:`SplitError` (or FileNotFoundError) with one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SplitError(f"cannot parse split file {path}: {exc}") from exc
    return split_from_dict(data, str(path))


def write_split(split: Split, path: str | Path) -> Path:
    """Write ``split`` as JSON atomically; returns the path."""
    return write_text_atomic(path, json.dumps(split.to_dict(), indent=1) + "\n")


def make_split(names: Sequence[str], folds: int, train_per_fold: int, *, seed: int = 0) -> Split:
    """A seeded split in the style of the official Task-1 split.

    The case names are shuffled with ``seed`` and dealt into ``folds`` disjoint groups; fold k
    trains on ``train_per_fold`` cases of group k and tests on every case it does not train on
    (as the Task-1 split: 4 training and the other 16 cases per fold). Raises :class:`SplitError`
    when ``folds * train_per_fold`` exceeds the number of cases or no test case would remain.
    """
    names = sorted(set(names))
    if folds < 1 or train_per_fold < 1:
        raise SplitError(
            f"expected --folds >= 1 and --train-per-fold >= 1, found {folds} and {train_per_fold}"
        )
    if folds * train_per_fold > len(names) or train_per_fold >= len(names):
        raise SplitError(
            f"{folds} folds x {train_per_fold} training cases need disjoint training sets and a "
            f"test set, but the dataset has {len(names)} cases"
        )
    order = list(names)
    random.Random(seed).shuffle(order)
    out = []
    for k in range(folds):
        train = order[k * train_per_fold : (k + 1) * train_per_fold]
        chosen = set(train)
        out.append(Fold(tuple(train), tuple(n for n in order if n not in chosen)))
    source = f"rdcl seeded split: {folds} folds, {train_per_fold} training cases each, seed {seed}"
    return Split(tuple(out), source)


def check_split(split: Split, names: Sequence[str], where: str = "split") -> None:
    """Raise :class:`SplitError` when the split names a case the dataset does not have."""
    known = set(names)
    for i, fold in enumerate(split.folds):
        missing = [n for n in (*fold.train, *fold.test) if n not in known]
        if missing:
            example = ", ".join(sorted(known)[:3])
            raise SplitError(
                f"{where}: fold {i} names {len(missing)} case(s) not in the dataset, e.g. "
                f"{missing[0]!r}; the dataset's cases are named like {example}"
            )
