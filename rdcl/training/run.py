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

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rdcl.config import Config, ConfigError
from rdcl.data import DatasetError, DatasetSpec, load_dataset
from rdcl.data.intensity import IntensityStats
from rdcl.data.mapping import check_one_mapping, pooled_stats
from rdcl.device import resolve_device
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import PRETRAIN_DIR, existing_run_files

from .data_streams import DatasetInput, as_cached, as_list, resolve_target_spacing
from .distributed import env_rank
from .loop import RunExistsError, reset_run
from .methods import get_method
from .resume import check_resumable
from .runlock import RunInUseError, exit_on_sigterm, run_lock
from .stages import load_pretrained, pretrain_general, train

if TYPE_CHECKING:
    from rdcl.data.preprocess import CachedDataset

logger = logging.getLogger(__name__)


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
    covid, generals = _load(covid), [_load(g) for g in as_list(general)]
    check_inputs(cfg, covid, generals)
    cfg = resolve_target_spacing(cfg, covid)  # the COVID set's grid for both stages
    method = get_method(cfg.train.method)
    out_dir = Path(out_dir)
    run_stage1 = method.needs_pretrained and pretrained is None
    if (run_stage1 or method.needs_general_batches) and not generals:
        raise ConfigError(
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
    if resume:  # a run to continue, on the same data: checked before the cache is written
        stage2 = [covid, *(generals if method.needs_general_batches else [])]
        stage1 = [(out_dir / PRETRAIN_DIR, generals)] if run_stage1 else []
        check_resumable([(out_dir, stage2), *stage1], out_dir=out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    if cache.exists() and not cache.is_dir():
        raise NotADirectoryError(f"the preprocessing cache must be a folder, found a file: {cache}")
    if method.needs_pretrained and pretrained is not None:
        load_pretrained(pretrained, cfg)  # a wrong checkpoint is refused before any writing
    uses_general = run_stage1 or method.needs_general_batches
    stats = _shared_stats(cfg, [covid, *(generals if uses_general else [])], pretrained)
    with _removed_unless_trained(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(out_dir), exit_on_sigterm():
            covid = as_cached(covid, cfg.data, cache, stats)  # reads and checks every case
            if uses_general:
                generals = [as_cached(g, cfg.data, cache, stats) for g in generals]
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
    generals = [_load(g) for g in as_list(general)]
    target = _load(covid) if covid is not None else None
    check_inputs(cfg, target, generals)
    if target is not None:
        cfg = resolve_target_spacing(cfg, target)  # G learns at the COVID set's scale
    stats = _shared_stats(cfg, [*([target] if target is not None else []), *generals], None)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"the run folder must be a folder, found a file: {out_dir}")
    if resume:  # a run to continue, on the same data: checked before the cache is written
        check_resumable([(out_dir, generals)], out_dir=out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    if stats is not None:  # preprocess with the pooled statistics (pretrain_general reuses them)
        generals = [as_cached(g, cfg.data, cache, stats) for g in generals]
    with _removed_unless_trained(out_dir):
        return pretrain_general(
            cfg,
            generals,
            out_dir,
            resume=resume,
            overwrite=overwrite,
            cache_dir=cache_dir,
            progress=progress,
        )


def _shared_stats(
    cfg: Config,
    datasets: Sequence[DatasetSpec | CachedDataset],
    pretrained: str | Path | None,
) -> IntensityStats | None:
    """Check that every dataset reaches G through one intensity mapping
    (:func:`rdcl.data.mapping.check_one_mapping`) and return the ``ct`` statistics the run's HU
    sets share: a pre-trained G's recorded ones (G keeps the mapping it learnt with), else pooled
    over the HU sets given (:func:`rdcl.data.mapping.pooled_stats`); ``None`` for the other rules.
    """
    mappings = check_one_mapping(datasets, cfg.data)
    rule = next((m.normalization for m in mappings if m.units == "hu"), None)
    ckpt = None
    if pretrained is not None and rule is not None:
        ckpt = load_checkpoint(pretrained)
        learnt = (ckpt.get("dataset") or {}).get("normalization")
        if learnt != rule:
            raise ConfigError(
                f"the pre-trained G ({pretrained}) learnt from {learnt!r} intensities but this "
                f"run maps its data with {rule!r}; G must see one mapping in both stages "
                "(pre-train it again with this run's data.normalization)"
            )
    if rule != "ct":
        return None
    if ckpt is not None:
        return IntensityStats.from_dict(ckpt["intensity"], f"{pretrained}: intensity")
    specs = [d for d in datasets if isinstance(d, DatasetSpec) and d.units == "hu"]
    return pooled_stats(specs) if specs else None


def _load(dataset: DatasetInput) -> DatasetSpec | CachedDataset:
    """A folder as its ``DatasetSpec`` (read once); a spec or a cached dataset as given."""
    if isinstance(dataset, (str, Path)):
        return load_dataset(dataset)
    return dataset


def _where(dataset: DatasetSpec | CachedDataset) -> str:
    return str(getattr(dataset, "root", None) or getattr(dataset, "cache_dir", dataset))


def check_inputs(
    cfg: Config,
    covid: DatasetSpec | CachedDataset | None,
    generals: Sequence[DatasetSpec | CachedDataset],
) -> None:
    """Refuse, before any work, a device this machine lacks and datasets whose dimensionality
    differs from each other's or from the network's (``covid`` may be None); ``rdcl cv`` makes
    the same check before it writes the study folder."""
    try:
        resolve_device(cfg.train.device)  # a typo or a missing GPU: one line before any work
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    ref, flag = (
        (covid, "--data") if covid is not None else (next(iter(generals), None), "--general")
    )
    if ref is None:
        return
    for g in generals:
        if g.dim != ref.dim:
            raise DatasetError(
                f"--general {_where(g)} is {g.dim}D but {flag} {_where(ref)} is {ref.dim}D"
            )
    if cfg.model.dim != ref.dim:
        raise ConfigError(
            f"the config describes a {cfg.model.dim}D network but the data ({_where(ref)}) is "
            f"{ref.dim}D; choose a {ref.dim}D config (e.g. preset "
            f"{'tiny2d' if ref.dim == 2 else 'tiny3d'})"
        )


@contextlib.contextmanager
def _removed_unless_trained(out_dir: Path) -> Iterator[None]:
    """On any failure (an interrupt included), remove what the block created in ``out_dir`` when
    no checkpoint exists there yet: the folder itself when it did not exist before, its content
    when it was empty. Nothing is removed once a checkpoint exists (it may be resumed), from a
    folder that held files, when another run holds the folder, or on a rank other than 0."""
    before = set(out_dir.iterdir()) if out_dir.is_dir() else None
    try:
        yield
    except RunInUseError:  # the folder is another run's: touch nothing
        raise
    except BaseException:
        if env_rank() == 0:  # under torchrun the folder is rank 0's
            _undo_fresh_run(out_dir, before)
        raise


def _undo_fresh_run(out: Path, before: set[Path] | None) -> None:
    if before or not out.is_dir() or any(out.rglob("*.ckpt")):
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
