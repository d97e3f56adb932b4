"""The run plan: everything one training run needs, resolved and checked once before anything is
written. :func:`plan_training` (for ``run_training`` and ``rdcl train``), :func:`plan_pretraining`
(``run_pretraining``, ``rdcl train --pretrain-only``) and :func:`plan_stage` (the one-stage entry
points ``pretrain_general`` and ``train``) each build a :class:`RunPlan`;
:func:`rdcl.training.stages.run_plan` runs it (one lock, one cache step, one reset).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdcl.config import Config
from rdcl.data import DatasetSpec, load_dataset
from rdcl.data.preprocessing.intensity import IntensityStats
from rdcl.data.preprocessing.mapping import check_one_mapping, pooled_stats
from rdcl.device import resolve_device
from rdcl.errors import CheckpointError, ConfigError, DatasetError, RdclInputError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.formats.run_folder import PRETRAIN_DIR, existing_run_files

from .data_streams import DatasetInput, as_list, resolve_target_spacing
from .loop import RunExistsError
from .methods import Method, get_method
from .resume import check_resumable

if TYPE_CHECKING:
    import torch

    from rdcl.data.preprocessing.preprocess import CachedDataset


@dataclass(frozen=True)
class RunPlan:
    """One run, checked: what :func:`rdcl.training.stages.run_plan` does, nothing left to resolve.

    Attributes:
        cfg: the resolved config (``data.target_spacing`` from the COVID set, else from the
            non-COVID sets).
        method: stage 2's method; None for a run of stage 1 alone.
        covid: the COVID set (stage 2's X_c), read once; None for stage 1 alone.
        generals: the non-COVID sets the run uses (stage 1's data and/or X_n), read once.
        out_dir: the run folder, locked for the run's life.
        cache_dir: the preprocessing cache.
        stage1_dir: where stage 1 runs (``out_dir/pretrain``, or ``out_dir`` for stage 1 alone);
            None when the run has no stage 1.
        pretrained_state: the model state of the given stage-1 checkpoint, checked against
            ``cfg.model``; None when stage 1 runs here or the method needs none.
        stats: the ``ct`` statistics every HU set is preprocessed with (None: each set's own).
        resume, overwrite: continue or replace the run in ``out_dir``.
        undo_fresh: remove what a run that fails before its first checkpoint created
            (``run_training``/``run_pretraining``; the one-stage entry points leave it).
        announce: log each stage as it starts (``run_training``).
    """

    cfg: Config
    method: Method | None
    covid: DatasetSpec | CachedDataset | None
    generals: tuple[DatasetSpec | CachedDataset, ...]
    out_dir: Path
    cache_dir: Path
    stage1_dir: Path | None
    pretrained_state: dict[str, torch.Tensor] | None = None
    stats: IntensityStats | None = None
    resume: bool = False
    overwrite: bool = False
    undo_fresh: bool = True
    announce: bool = False

    @property
    def folders(self) -> list[Path]:
        """The stage folders, stage 2's first (each reset once before the run)."""
        stage2 = [self.out_dir] if self.method is not None else []
        return stage2 + ([self.stage1_dir] if self.stage1_dir is not None else [])


def check_pretrained_use(method: Method, pretrained: str | Path | None) -> None:
    """Refuse a stage-1 checkpoint given to a method that trains from scratch (it would be
    ignored in silence): :class:`~rdcl.errors.RdclInputError`, one line."""
    if pretrained is not None and not method.needs_pretrained:
        raise RdclInputError(
            f"--pretrained gives a stage-1 G, which method {method.name!r} does not "
            "use (it trains from scratch); expected no --pretrained, or a method that starts "
            "from stage 1 (pretrain, multi_encoder, backbone, rdcl_g, rdcl)"
        )


def plan_training(
    cfg: Config,
    covid: DatasetInput,
    general: Sequence[DatasetInput] | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    pretrained: str | Path | None = None,
) -> RunPlan:
    """The plan of :func:`rdcl.training.run.run_training` (arguments, checks and errors there)."""
    covid, generals = _load(covid), [_load(g) for g in as_list(general)]
    check_inputs(cfg, covid, generals)
    cfg = resolve_target_spacing(cfg, covid)  # the COVID set's grid for both stages
    method = get_method(cfg.train.method)
    check_pretrained_use(method, pretrained)
    out_dir = Path(out_dir)
    run_stage1 = method.needs_pretrained and pretrained is None
    if (run_stage1 or method.needs_general_batches) and not generals:
        raise ConfigError(
            f"method {method.name!r} needs non-COVID lesion data (--general) to "
            f"{'pre-train G' if run_stage1 else 'compute L_G'}, found none"
        )
    _check_steps(cfg, stage1=run_stage1, stage2=True)
    stage1_dir = out_dir / PRETRAIN_DIR if run_stage1 else None
    uses_general = run_stage1 or method.needs_general_batches
    generals = generals if uses_general else []
    _check_run_folder(out_dir, [out_dir, *([stage1_dir] if stage1_dir else [])], resume, overwrite)
    if resume:  # a run to continue, on the same data: checked before the cache is written
        stage2 = [covid, *(generals if method.needs_general_batches else [])]
        stage1 = [(stage1_dir, generals)] if stage1_dir else []
        check_resumable([(out_dir, stage2), *stage1], out_dir=out_dir)
    cache = _cache_dir(cache_dir, out_dir)
    ckpt, state = None, None
    if method.needs_pretrained and pretrained is not None:
        ckpt = load_checkpoint(pretrained)  # a wrong checkpoint is refused before any writing
        state = _pretrained_state(ckpt, pretrained, cfg)
    return RunPlan(
        cfg=cfg,
        method=method,
        covid=covid,
        generals=tuple(generals),
        out_dir=out_dir,
        cache_dir=cache,
        stage1_dir=stage1_dir,
        pretrained_state=state,
        stats=_shared_stats(cfg, [covid, *generals], ckpt, pretrained),
        resume=resume,
        overwrite=overwrite,
        announce=True,
    )


def plan_pretraining(
    cfg: Config,
    general: Sequence[DatasetInput],
    out_dir: str | Path,
    *,
    covid: DatasetInput | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
) -> RunPlan:
    """The plan of :func:`rdcl.training.run.run_pretraining` (stage 1 alone, in ``out_dir``)."""
    generals = [_load(g) for g in as_list(general)]
    target = _load(covid) if covid is not None else None
    check_inputs(cfg, target, generals)
    if not generals:
        raise DatasetError("stage 1 needs at least one non-COVID dataset, found none")
    # G learns at the COVID set's scale (the non-COVID sets' own without one)
    cfg = resolve_target_spacing(cfg, target if target is not None else generals)
    _check_steps(cfg, stage1=True, stage2=False)
    stats = _shared_stats(cfg, [*([target] if target is not None else []), *generals], None, None)
    out_dir = Path(out_dir)
    _check_run_folder(out_dir, [out_dir], resume, overwrite)
    if resume:  # a run to continue, on the same data: checked before the cache is written
        check_resumable([(out_dir, generals)], out_dir=out_dir)
    return RunPlan(
        cfg=cfg,
        method=None,
        covid=None,
        generals=tuple(generals),
        out_dir=out_dir,
        cache_dir=_cache_dir(cache_dir, out_dir),
        stage1_dir=out_dir,
        stats=stats,
        resume=resume,
        overwrite=overwrite,
    )


def plan_stage(
    cfg: Config,
    stage: str,
    covid: DatasetInput | None,
    general: DatasetInput | Sequence[DatasetInput] | None,
    out_dir: str | Path,
    *,
    pretrained: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
) -> RunPlan:
    """The plan of one stage in ``out_dir``: ``stage`` ``"pretrain"``
    (:func:`rdcl.training.stages.pretrain_general`, on ``general``) or ``"train"``
    (:func:`rdcl.training.stages.train`); the datasets' own intensity statistics, no removal on
    failure."""
    generals = as_list(general)
    out_dir = Path(out_dir)
    method, state = None, None
    if stage == "pretrain":
        generals = [_load(g) for g in generals]
        if not generals:
            raise DatasetError("stage 1 needs at least one non-COVID dataset, found none")
        _check_steps(cfg, stage1=True, stage2=False)
        cfg = resolve_target_spacing(cfg, generals)
    else:
        method = get_method(cfg.train.method)
        check_pretrained_use(method, pretrained)
        _check_steps(cfg, stage1=False, stage2=True)
        covid = _load(covid)
        cfg = resolve_target_spacing(cfg, covid)
        if method.needs_general_batches and not generals:
            raise DatasetError(
                f"method {method.name!r} needs a non-COVID dataset for L_G, found none"
            )
        generals = [_load(g) for g in generals] if method.needs_general_batches else []
        if method.needs_pretrained and pretrained is None:
            raise ConfigError(
                f"method {method.name!r} needs a stage-1 network pre-trained on non-COVID "
                "lesions; pass pretrained=<stage-1 final.ckpt>"
            )
        if method.needs_pretrained:
            state = load_pretrained(pretrained, cfg)
    _check_run_folder(out_dir, [out_dir], resume, overwrite)
    return RunPlan(
        cfg=cfg,
        method=method,
        covid=covid if method is not None else None,
        generals=tuple(generals),
        out_dir=out_dir,
        cache_dir=_cache_dir(cache_dir, out_dir),
        stage1_dir=out_dir if method is None else None,
        pretrained_state=state,
        resume=resume,
        overwrite=overwrite,
        undo_fresh=False,
    )


def load_pretrained(path: str | Path, cfg: Config) -> dict[str, torch.Tensor]:
    """The model state of a stage-1 checkpoint, checked against ``cfg.model``.

    Raises:
        CheckpointError: not a stage-1 single-encoder checkpoint, or another architecture.
    """
    return _pretrained_state(load_checkpoint(path), path, cfg)


def _pretrained_state(ckpt: dict[str, Any], path: str | Path, cfg: Config) -> dict:
    if ckpt["kind"] != "single":
        raise CheckpointError(
            f"pre-trained checkpoint {path} must hold a single-encoder network, found "
            f"kind {ckpt['kind']!r}"
        )
    saved_model = json.loads(json.dumps(ckpt["config"].get("model")))
    wanted = json.loads(json.dumps(dataclasses.asdict(cfg.model)))
    if saved_model != wanted:
        raise CheckpointError(
            f"pre-trained checkpoint {path} holds another architecture: expected model config "
            f"{wanted}, found {saved_model}"
        )
    return ckpt["model"]


def _check_steps(cfg: Config, *, stage1: bool, stage2: bool) -> None:
    """The config allows 0 steps (e.g. ``train.pretrain_steps`` of a run that skips stage 1); a
    stage that runs needs at least one."""
    if stage1 and cfg.train.pretrain_steps < 1:
        raise ConfigError(f"train.pretrain_steps must be >= 1, found {cfg.train.pretrain_steps}")
    if stage2 and cfg.train.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, found {cfg.train.steps}")


def _check_run_folder(out_dir: Path, folders: list[Path], resume: bool, overwrite: bool) -> None:
    """Refuse a file as the run folder, and a folder that holds a run's checkpoints unless
    ``resume`` or ``overwrite`` (nothing is written yet)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"the run folder must be a folder, found a file: {out_dir}")
    if resume or overwrite:
        return
    found = [p for f in folders for p in existing_run_files(f) if p.suffix == ".ckpt"]
    if found:
        raise RunExistsError(
            f"output folder {out_dir} already holds a run ({found[0]}); pass resume=True "
            "(--resume) to continue it or overwrite=True (--overwrite) to start again"
        )


def _cache_dir(cache_dir: str | Path | None, out_dir: Path) -> Path:
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    if cache.exists() and not cache.is_dir():
        raise NotADirectoryError(f"the preprocessing cache must be a folder, found a file: {cache}")
    return cache


def _shared_stats(
    cfg: Config,
    datasets: Sequence[DatasetSpec | CachedDataset],
    ckpt: dict[str, Any] | None,
    pretrained: str | Path | None,
) -> IntensityStats | None:
    """Check that every dataset reaches G through one intensity mapping
    (:func:`rdcl.data.preprocessing.mapping.check_one_mapping`) and return the ``ct`` statistics the
    run's HU sets share: a pre-trained G's recorded ones (``ckpt``, read from ``pretrained``: G
    keeps the mapping it learnt with), else pooled over the HU sets given
    (:func:`rdcl.data.preprocessing.mapping.pooled_stats`); ``None`` for the other rules.
    """
    mappings = check_one_mapping(datasets, cfg.data)
    rule = next((m.normalization for m in mappings if m.units == "hu"), None)
    ckpt = ckpt if rule is not None else None
    if ckpt is not None:
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
    differs from each other's or from the network's (``covid`` may be None): the one home of
    these checks (``rdcl cv`` makes them before it writes the study folder, ``rdcl train
    --nproc-per-node`` before it starts the ranks)."""
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
            f"the config describes a {cfg.model.dim}D network but the data is {ref.dim}D; "
            f"choose a {ref.dim}D config (e.g. --preset {'tiny2d' if ref.dim == 2 else 'tiny3d'})"
        )
