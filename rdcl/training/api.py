"""One call from datasets to a trained model: :func:`run_training` (what ``rdcl train`` runs).

Run folder layout::

    RUN_DIR/config.json, log.jsonl, last.ckpt, final.ckpt   stage 2 (the method)
    RUN_DIR/pretrain/...                                     stage 1 (G on non-COVID lesions)
    RUN_DIR/cache/<dataset>-<hash>/                          preprocessed arrays (default)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdcl.config import Config

from .datasets import as_cached, as_list, resolve_target_spacing
from .loop import RunExistsError, existing_run_files, reset_run
from .methods import get_method
from .runlock import exit_on_sigterm, run_lock
from .stages import load_pretrained, pretrain_general, train

logger = logging.getLogger(__name__)

PRETRAIN_DIR = "pretrain"
"""Sub-folder of the run folder that holds stage 1."""


def run_training(
    cfg: Config,
    covid: Any,
    general: Sequence[Any] | None,
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

    Order: every input is validated (config, ``pretrained``, and every case of every dataset,
    by preprocessing it) before an existing run is touched, so ``overwrite`` with bad inputs
    keeps the old run. The run folder's lock (:mod:`rdcl.training.runlock`) is held from
    preprocessing to the end; on ``resume`` the data must be those the run was trained on.

    Raises:
        RunExistsError: ``out_dir`` holds checkpoints and neither ``resume`` nor ``overwrite``
            is set (checked before anything is written).
        RunInUseError: another process is running in ``out_dir``.
        ValueError: the method needs non-COVID data and none was given; bad config values.
        rdcl.data.DatasetError, TrainingDivergedError, CheckpointError.
    """
    cfg = resolve_target_spacing(cfg.validate(), covid)  # the COVID set's grid for both stages
    method = get_method(cfg.train.method)
    out_dir = Path(out_dir)
    generals = as_list(general)
    run_stage1 = method.needs_pretrained and pretrained is None
    if (run_stage1 or method.needs_general_batches) and not generals:
        raise ValueError(
            f"method {method.name!r} needs non-COVID lesion data (--general) to "
            f"{'pre-train G' if run_stage1 else 'compute L_G'}, found none"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"the run folder must be a folder, found a file: {out_dir}")
    if not (resume or overwrite):
        folders = [out_dir, out_dir / PRETRAIN_DIR] if run_stage1 else [out_dir]
        found = [p for f in folders for p in existing_run_files(f) if p.suffix == ".ckpt"]
        if found:
            raise RunExistsError(
                f"output folder {out_dir} already holds a run ({found[0]}); pass resume=True "
                "(--resume) to continue it or overwrite=True (--overwrite) to start again"
            )
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    if cache.exists() and not cache.is_dir():
        raise NotADirectoryError(f"the preprocessing cache must be a folder, found a file: {cache}")
    if method.needs_pretrained and pretrained is not None:
        load_pretrained(pretrained, cfg)  # a wrong checkpoint is refused before any writing
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir), exit_on_sigterm():
        covid = as_cached(covid, cfg.data, cache)  # reads and checks every case
        if run_stage1 or method.needs_general_batches:
            generals = [as_cached(g, cfg.data, cache) for g in generals]
        reset_run(out_dir, resume=resume, overwrite=overwrite)
        if run_stage1 and (out_dir / PRETRAIN_DIR).is_dir():
            reset_run(out_dir / PRETRAIN_DIR, resume=resume, overwrite=overwrite)
        if run_stage1:
            logger.info("stage 1: pre-training G on %d non-COVID dataset(s)", len(generals))
            pretrained = pretrain_general(
                cfg,
                generals,
                out_dir / PRETRAIN_DIR,
                resume=resume,
                overwrite=overwrite,
                cache_dir=cache,
                progress=progress,
            )
        logger.info("stage 2: training %s", method.name)
        return train(
            cfg,
            covid,
            generals,
            out_dir,
            pretrained=pretrained if method.needs_pretrained else None,
            resume=resume,
            overwrite=overwrite,
            cache_dir=cache,
            progress=progress,
        )
