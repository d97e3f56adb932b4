"""What ``resume`` needs, checked before anything is written (issue 18, item 5).

A resume continues a stopped run: there must be one (a ``last.ckpt`` or ``final.ckpt`` in the run
folder, or in its stage-1 folder), and it must have been trained on the data given now. Both are
checked here, from the checkpoints' ``data`` records and the datasets' source identities
(:func:`rdcl.training.data_streams.source_identity`: folder, case names, file sizes and times),
before the preprocessing cache or anything else is written into the run folder. (The training
loop checks the same again when it loads the checkpoint, and also the configuration.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdcl.data.datasets.spec import DatasetSpec
from rdcl.errors import DatasetError, RdclInputError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import FINAL, LAST

from .data_streams import data_differences, identity_of, source_identity

if TYPE_CHECKING:
    from rdcl.data.preprocessing.preprocess import CachedDataset


class NothingToResumeError(RdclInputError):
    """``resume`` was asked for a folder that holds no checkpoint of a stopped run."""


def data_identity(dataset: DatasetSpec | CachedDataset) -> dict[str, Any]:
    """The identity record a checkpoint's ``data`` entry holds for ``dataset`` (a spec: its
    source files; a cached dataset: the identity recorded when it was cached)."""
    return source_identity(dataset) if isinstance(dataset, DatasetSpec) else identity_of(dataset)


def check_resumable(
    targets: Sequence[tuple[Path, Sequence[DatasetSpec | CachedDataset]]], *, out_dir: Path
) -> None:
    """Refuse a resume that has nothing to continue or would continue on other data.

    Args:
        targets: per stage folder (stage 2's run folder, stage 1's ``pretrain/``), the datasets
            that stage reads, in the order its checkpoint records them.
        out_dir: the run folder named in the messages.

    Raises:
        NothingToResumeError: no folder holds a ``last.ckpt`` or ``final.ckpt``.
        DatasetError: a checkpoint was trained on other data (folder, cases, sizes or times).
        CheckpointError: a checkpoint cannot be read.
    """
    found = False
    for folder, datasets in targets:
        path = next((folder / n for n in (FINAL, LAST) if (folder / n).is_file()), None)
        if path is None:
            continue
        found = True
        saved = load_checkpoint(path).get("data")
        if saved is None:  # written before rdcl recorded its data
            continue
        diff = data_differences(saved, [data_identity(d) for d in datasets])
        if diff:
            raise DatasetError(
                f"cannot resume {path}: the data differ from the run's: {'; '.join(diff)}; "
                "resume with the run's data (--data/--general) or start a new run"
            )
    if not found:
        raise NothingToResumeError(
            f"nothing to resume in {out_dir}: no {LAST} or {FINAL} of a stopped run; expected "
            "the folder of a run that was started before, or no --resume to start one"
        )
