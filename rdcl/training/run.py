"""One call from datasets to a trained model: :func:`run_training` (what ``rdcl train`` runs) and
:func:`run_pretraining` (``rdcl train --pretrain-only``).

Run folder layout (file names: :mod:`rdcl.formats.run_folder`)::

    RUN_DIR/config.json, log.jsonl, last.ckpt, final.ckpt   stage 2 (the method)
    RUN_DIR/pretrain/...                                     stage 1 (G on non-COVID lesions)
    RUN_DIR/cache/<dataset>-<hash>/                          preprocessed arrays (default)

A run that fails before its first checkpoint removes what it created in the run folder (the
folder itself when it did not exist), so a typo in the data never leaves a half-made run behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rdcl.config import Config

from .data_streams import DatasetInput
from .plan import plan_pretraining, plan_training
from .stages import run_plan


def run_training(
    cfg: Config,
    covid: DatasetInput,
    general: Sequence[DatasetInput] | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    pretrained: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Preprocess, pre-train G when the method needs it, and train ``cfg.train.method``.

    Args:
        cfg: the resolved configuration.
        covid: the COVID (target) dataset: a folder in any layout ``rdcl.data.load_dataset``
            detects, a ``DatasetSpec`` or a ``CachedDataset``.
        general: the non-COVID lesion datasets (same forms); stage 1 trains on all of them and
            rdcl_g/rdcl draw X_n from them. Not needed by ``baseline``, nor when ``pretrained``
            is given for a method without L_G.
        out_dir: the run folder (layout in the module docstring).
        resume: continue a stopped run (stage 1, then stage 2, each from its ``last.ckpt``).
        overwrite: start an existing run folder again (its checkpoints and logs are replaced).
        cache_dir: preprocessing cache (default ``out_dir/cache``; reused when unchanged).
        pretrained: a stage-1 ``final.ckpt`` to use instead of running stage 1.
        progress: show tqdm progress bars.

    Returns:
        Path of the stage-2 ``final.ckpt``.

    Order: every input is validated (config, device, the datasets' dimensionality, ``pretrained``,
    and every case of every dataset, by preprocessing it) before an existing run is touched, so
    ``overwrite`` with bad inputs keeps the old run. The run folder's lock
    (:mod:`rdcl.training.runlock`) is held from preprocessing to the end; on ``resume`` the data
    must be those the run was trained on. A run that fails before its first checkpoint removes
    what it created (module docstring).

    Raises:
        RunExistsError: ``out_dir`` holds checkpoints and neither ``resume`` nor ``overwrite``
            is set (checked before anything is written).
        RunInUseError: another process is running in ``out_dir``.
        ConfigError: a ``cfg.model.dim`` other than the data's; a device this machine lacks.
        rdcl.data.DatasetError: a non-COVID set of another dimensionality than the COVID set;
            unreadable datasets.
        ValueError: the method needs non-COVID data and none was given.
        TrainingDivergedError, CheckpointError.
    """
    plan = plan_training(
        cfg, covid, general, out_dir,
        resume=resume, overwrite=overwrite, cache_dir=cache_dir, pretrained=pretrained,
    )  # fmt: skip
    return run_plan(plan, progress=progress)


def run_pretraining(
    cfg: Config,
    general: Sequence[DatasetInput],
    out_dir: str | Path,
    *,
    covid: DatasetInput | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Stage 1 alone (``rdcl train --pretrain-only``): G with a decoder on the non-COVID sets,
    in ``out_dir`` itself, e.g. to share one stage 1 between several runs (pass its
    ``final.ckpt`` as :func:`run_training`'s ``pretrained``).

    ``general`` are the datasets G trains on; ``covid``, when given, is the COVID set the
    pre-trained G is meant for (only its dimensionality is checked). Other arguments, the
    checks and the errors are :func:`run_training`'s. Returns the ``final.ckpt`` path.
    """
    plan = plan_pretraining(
        cfg, general, out_dir,
        covid=covid, resume=resume, overwrite=overwrite, cache_dir=cache_dir,
    )  # fmt: skip
    return run_plan(plan, progress=progress)
