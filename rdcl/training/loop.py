"""The optimisation loop shared by both stages: LR schedule, clipping, divergence guard, per-step
log, periodic atomic checkpoints and exact resume.

A stage folder holds ``config.json`` (the resolved config), ``log.jsonl``, ``last.ckpt`` (every
``train.checkpoint_every`` steps) and ``final.ckpt`` (on completion, no optimiser state).

Exact resume (``resume=True``; only the config's ``RESUME_FREE_KEYS`` may change): batches are a
pure function of (seed, step) (``rdcl.data.PatchSampler``), the LR is a pure function of the step,
and the checkpoint restores the weights, the optimiser's momentum buffers and every global RNG, so
on the CPU N steps + resume + N steps gives bitwise the weights of 2N steps straight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdcl.config import Config, TrainConfig
from rdcl.device import resolve_device as resolve_device  # exported by rdcl.training
from rdcl.errors import CheckpointError, ConfigError, DatasetError
from rdcl.formats.checkpoint import (
    FORMAT,
    load_checkpoint,
    nonfinite_weights,
    remove_stale_temps,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rdcl.formats.run_folder import (
    CONFIG_NAME,
    FINAL,
    LAST,
    LOG_NAME,
    SNAPSHOT_DIR,
    existing_run_files,
)
from rdcl.formats.run_log import JsonlLog
from rdcl.fsutil import write_text_atomic
from rdcl.progress import progress_bar

from .data_streams import data_differences
from .distributed import DistContext
from .divergence import LossGrowthGuard, TrainingDivergedError, check_finite
from .schedule import clip_gradients_tensor, poly_lr, set_lr

logger = logging.getLogger(__name__)

TERMS = ("loss", "seg", "d_g", "d_t", "loss_g", "loss_t")
"""Loss terms a step function may return (tensors or None); ``loss`` is the one back-propagated."""


class RunExistsError(FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked for."""


@dataclass
class Stage:
    """One training stage to run.

    Attributes:
        name: ``"pretrain"`` (stage 1) or ``"train"`` (stage 2); written into log and checkpoints.
        cfg: the resolved configuration (saved with every checkpoint).
        net: the network on its device; its trainable parameters are the optimiser's.
        kind: the network kind (``"single"``, ``"dual"``, ``"multi_encoder"``).
        out_dir: the stage folder.
        total_steps: steps of the stage (the poly schedule's T).
        compute: ``compute(step, batch) -> (terms, ramp)`` with ``terms`` a dict over
            :data:`TERMS` (scalar tensors or None) and ``ramp`` the relation-loss ramp or None.
        batches: ``batches(start_step)`` yields the batches of steps start_step .. total-1.
        meta: extra checkpoint entries (``intensity``, ``dataset``).
        dist: the data-parallel context (``rdcl.training.distributed``); with several ranks only
            rank 0 writes files, logs and draws the progress bar, and the logged terms are the
            means over the ranks.
        notes: facts about the stage's data for ``config.json`` ``run`` (``xn_padding``: the
            expected padding fraction of X_n samples per non-COVID set).
        probe: ``probe() -> {log key: 0-dim tensor}`` of extra logged numbers (G's ``g_rank``
            and ``g_rms``, ``rdcl.training.feature_stats``), called only on the logged steps
            that ``train.feature_stats_every`` selects (:func:`feature_stats_due`); its values
            join the step's one host transfer (means over the ranks).
    """

    name: str
    cfg: Config
    net: nn.Module
    kind: str
    out_dir: Path
    total_steps: int
    compute: Callable[[int, Any], tuple[dict[str, torch.Tensor | None], float | None]]
    batches: Callable[[int], Iterable[Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    dist: DistContext = field(default_factory=DistContext)
    probe: Callable[[], dict[str, torch.Tensor]] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def run_record(self) -> dict[str, Any]:
        """World size, per-rank and global batch of this run, and the stage's ``notes`` (e.g.
        ``xn_padding``) (``config.json`` ``run``)."""
        return {**self.dist.record(self.cfg.data.batch_size), **self.notes}


def reset_run(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out_dir`` ready for the run that starts now (call it holding the folder's lock):
    remove the temporary files of checkpoint writes a killed run left, and for ``overwrite``
    (without ``resume``) the old run's checkpoints and log."""
    out_dir = Path(out_dir)
    for p in remove_stale_temps(out_dir):
        logger.info("removed %s, left by a run killed while writing a checkpoint", p)
    if overwrite and not resume:
        for p in existing_run_files(out_dir):
            p.unlink(missing_ok=True)


def write_config(cfg: Config, out_dir: Path, run: dict[str, Any] | None = None) -> None:
    """Write the resolved config as ``out_dir/config.json``, with ``run`` (how this run executes:
    world size, per-rank batch; ignored by ``Config.from_dict``) as its ``"run"`` entry;
    atomic (:func:`rdcl.fsutil.write_text_atomic`)."""
    payload = cfg.to_dict() if run is None else {**cfg.to_dict(), "run": run}
    write_text_atomic(out_dir / CONFIG_NAME, json.dumps(payload, indent=2))


RESUME_FREE_KEYS = frozenset(
    {
        "train.device",
        "train.checkpoint_every",
        "train.log_every",
        "train.feature_stats_every",
        "train.snapshots",
        "data.num_workers",
        "data.loader_thread",
        "train.cudnn_benchmark",
        "train.channels_last",
        "train.compile",
        "train.cuda_graphs",
        "train.batched_general",
        "train.dist_timeout_s",
    }
)
"""Config keys that may change on resume: they do not change what the run computes (the speed
switches only change floating-point summation order). The number of ranks is no config key: a
run may resume with any number of ranks that divides ``data.batch_size``."""


LEGACY_VALUES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "train.general_weight_decay": lambda saved: saved.get("train", {}).get("weight_decay"),
    "train.general_anchor": lambda saved: 0.0,
}
"""Config keys added after checkpoints were written: key -> the value a saved config that lacks
the key ran with (G was decayed like every other parameter and anchored to nothing before
``train.general_weight_decay`` and ``train.general_anchor`` existed). Resume compares the
current config with it."""


def _check_same_config(saved: dict[str, Any], cfg: Config, path: Path) -> None:
    current = json.loads(json.dumps(cfg.to_dict()))
    saved = json.loads(json.dumps(saved))
    filled = []  # keys the checkpoint predates, given the values it ran with
    for key, legacy in LEGACY_VALUES.items():
        section, name = key.split(".", 1)
        if name not in saved.get(section, {name: None}):
            saved[section][name] = legacy(saved)
            filled.append(key)
    diff = [
        f"{section}.{key}"
        for section in current
        for key in current[section]
        if saved.get(section, {}).get(key) != current[section][key]
        and f"{section}.{key}" not in RESUME_FREE_KEYS
    ]
    if diff:
        legacy = [f"{k}={saved[k.split('.')[0]][k.split('.')[1]]}" for k in filled if k in diff]
        hint = (
            f" (the checkpoint predates the key{'s' if len(legacy) > 1 else ''}: --set "
            f"{' '.join(legacy)} resumes it as it ran)"
            if legacy
            else ""
        )
        raise ConfigError(
            f"cannot resume {path}: the config differs from the checkpoint's in {diff}; "
            f"resume with the same config or start a new run{hint}"
        )


def _check_same_data(ckpt: dict[str, Any], stage: Stage, path: Path) -> None:
    """Refuse to resume on other data than the checkpoint's (its ``data`` record; checkpoints
    written before rdcl recorded it are not checked)."""
    saved, current = ckpt.get("data"), stage.meta.get("data")
    if saved is None or current is None:
        return
    diff = data_differences(saved, current)
    if diff:
        raise DatasetError(
            f"cannot resume {path}: the data differ from the run's: {'; '.join(diff)}; resume "
            "with the run's data (--data/--general) or start a new run"
        )


def _check_finite_weights(stage: Stage, step: int, good: Path | None) -> None:
    """Raise :class:`TrainingDivergedError` when the network's weights hold NaN/inf (e.g. from a
    non-finite learning rate), before such weights reach a checkpoint."""
    bad, where = nonfinite_weights(stage.net.state_dict())
    if bad:
        last = f"last good checkpoint: {good}" if good else "no checkpoint written"
        raise TrainingDivergedError(
            f"training diverged at step {step} ({stage.name}): the weights hold {bad} NaN/inf "
            f"values (first in {where!r}); expected finite weights; not saved ({last})"
        )


def _payload(
    stage: Stage,
    step: int,
    optimizer: torch.optim.Optimizer | None,
    growth: LossGrowthGuard | None = None,
) -> dict[str, Any]:
    extra = {"loss_growth": growth.state_dict()} if growth is not None else {}
    return {
        "format": FORMAT,
        "config": stage.cfg.to_dict(),
        "kind": stage.kind,
        "stage": stage.name,
        "step": step,
        "model": {k: v.detach().cpu() for k, v in stage.net.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": rng_state(),
        "distributed": stage.dist.record(stage.cfg.data.batch_size),
        **extra,
        **stage.meta,
    }


def snapshot_steps(total: int, count: int) -> set[int]:
    """The steps (0..``total``) at which ``count`` evenly spaced snapshots are kept, step 0
    included; empty when ``count`` is 0."""
    if count <= 0 or total <= 0:
        return set()
    return {round(i * total / count) for i in range(count + 1)}


def _save_snapshot(stage: Stage, done: int) -> None:
    folder = stage.out_dir / SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    save_checkpoint(folder / f"{stage.name}_step_{done:07d}.ckpt", _payload(stage, done, None))


def feature_stats_due(done: int, total: int, cfg: TrainConfig) -> bool:
    """Whether the step that brings the count of optimiser steps to ``done`` (1-based) of
    ``total`` logs G's feature statistics: it is logged (``done`` a multiple of
    ``cfg.log_every``, or the last step) and ``done`` is a multiple of
    ``cfg.feature_stats_every`` or the last step; never when ``feature_stats_every`` is 0."""
    if cfg.feature_stats_every <= 0:
        return False
    if done == total:
        return True
    return done % cfg.log_every == 0 and done % cfg.feature_stats_every == 0


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], path: Path
) -> None:
    """``optimizer.load_state_dict(state)``, with a one-line :class:`CheckpointError` when the
    saved optimiser has another parameter layout (e.g. one group where
    ``train.general_weight_decay`` now asks for two)."""
    saved = [len(g["params"]) for g in state.get("param_groups", [])]
    current = [len(g["params"]) for g in optimizer.param_groups]
    if saved != current:
        raise CheckpointError(
            f"cannot resume {path}: its optimiser state has parameter groups of sizes {saved}, "
            f"the run's optimiser {current} (train.general_weight_decay different from "
            "train.weight_decay puts G's parameters in a group of their own); resume with the "
            "checkpoint's config or start a new run"
        )
    optimizer.load_state_dict(state)


def run_stage(
    stage: Stage, optimizer: torch.optim.Optimizer, *, resume: bool, progress: bool = True
) -> Path:
    """Run (or resume) ``stage`` to completion and return the path of its ``final.ckpt``.

    Per step t (0-based): set lr = poly(t), compute the terms, stop on a non-finite term, one
    backward of ``terms["loss"]``, clip the global gradient norm, stop on a non-finite norm,
    optimiser step, log, and every ``checkpoint_every`` steps write ``last.ckpt``.

    Raises:
        TrainingDivergedError: a loss term or the gradient norm is NaN/inf; the optimiser step is
            not taken and no checkpoint is written, so ``last.ckpt`` is the last good state.
    """
    out, tcfg = stage.out_dir, stage.cfg.train
    final, last = out / FINAL, out / LAST
    growth = LossGrowthGuard(stage.name)  # a finite loss grown by orders of magnitude
    if resume and final.is_file():
        _check_resumable(load_checkpoint(final), stage, final)
        logger.info("%s: %s exists, stage already complete", stage.name, final)
        return final
    start = _resume_from(last, stage, optimizer, growth) if resume else 0
    record = stage.run_record()  # raises when the batch does not split over the ranks
    main = stage.dist.is_main
    if main:
        write_config(stage.cfg, out, record)
        logger.info(
            "%s: %d rank(s) x batch %d (global batch %d)",
            stage.name,
            record["world_size"],
            record["per_rank_batch"],
            record["global_batch"],
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    keep = snapshot_steps(stage.total_steps, tcfg.snapshots) if main else set()
    if start == 0 and 0 in keep:
        _save_snapshot(stage, 0)
    stage.net.train()
    with (
        JsonlLog(out / LOG_NAME, keep_until=start) if main else contextlib.nullcontext() as log,
        progress_bar(
            total=stage.total_steps,
            initial=start,
            desc=stage.name,
            unit="steps",
            disable=not (progress and main),
        ) as bar,
    ):
        done = start
        for step, batch in zip(range(start, stage.total_steps), stage.batches(start), strict=False):
            tic = time.perf_counter()
            lr = poly_lr(step, stage.total_steps, tcfg.lr, tcfg.poly_exponent)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            terms, ramp = stage.compute(step, batch)
            terms["loss"].backward()
            grad_norm = clip_gradients_tensor(params, tcfg.grad_clip)
            # G's feature statistics on the steps that log them (the same on every rank)
            probed = {}
            if stage.probe is not None and feature_stats_due(step + 1, stage.total_steps, tcfg):
                probed = stage.probe()
            values, probed_values, norm = _synced_values(stage, terms, grad_norm, probed)
            good = last if last.is_file() else None
            check_finite(values, step=step + 1, stage=stage.name, last_good=good)
            check_finite({"grad_norm": norm}, step=step + 1, stage=stage.name, last_good=good)
            growth.update(values["seg"], step=step + 1, last_good=good)
            optimizer.step()
            done = step + 1
            if main and (done % tcfg.log_every == 0 or done == stage.total_steps):
                entry = {"step": done, "stage": stage.name, "lr": lr, "ramp": ramp, **values}
                entry.update(grad_norm=norm, seconds=time.perf_counter() - tic)
                entry.update(world_size=record["world_size"], batch=record["per_rank_batch"])
                entry.update(probed_values)
                log.write(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            if main and done % tcfg.checkpoint_every == 0:
                _check_finite_weights(stage, done, good)
                save_checkpoint(last, _payload(stage, done, optimizer, growth))
            if done in keep:
                _save_snapshot(stage, done)
    _check_finite_weights(stage, done, last if last.is_file() else None)
    growth.finish(done, last if last.is_file() else None)
    if done != stage.total_steps:
        raise RuntimeError(
            f"{stage.name}: the batch source ran out after step {done}; expected "
            f"{stage.total_steps} steps"
        )
    if main:
        save_checkpoint(final, _payload(stage, stage.total_steps, None))
        logger.info("%s: finished %d steps -> %s", stage.name, stage.total_steps, final)
    stage.dist.barrier()  # the other ranks may read final.ckpt (stage 2 loads stage 1's)
    return final


def _check_resumable(ckpt: dict[str, Any], stage: Stage, path: Path) -> None:
    """A checkpoint of this stage resumes only with the same data and config (raises)."""
    _check_same_data(ckpt, stage, path)  # first: other data also change target_spacing
    _check_same_config(ckpt["config"], stage.cfg, path)


def _resume_from(
    last: Path, stage: Stage, optimizer: torch.optim.Optimizer, growth: LossGrowthGuard
) -> int:
    """Load ``last.ckpt`` (weights, optimiser, RNG, loss-growth guard) into the stage and return
    its step; 0, with a warning, when there is none."""
    if not last.is_file():
        logger.warning("%s: no %s to resume from; starting at step 0", stage.name, last)
        return 0
    ckpt = load_checkpoint(last)
    _check_resumable(ckpt, stage, last)
    stage.net.load_state_dict(ckpt["model"])
    _load_optimizer_state(optimizer, ckpt["optimizer"], last)
    set_rng_state(ckpt["rng"])
    growth.load_state_dict(ckpt.get("loss_growth"), path=last)  # absent in old checkpoints
    start = int(ckpt["step"])
    logger.info("%s: resuming from %s at step %d", stage.name, last, start)
    return start


def _synced_values(
    stage: Stage,
    terms: dict[str, torch.Tensor | None],
    grad_norm: torch.Tensor,
    probed: dict[str, torch.Tensor],
) -> tuple[dict[str, float | None], dict[str, float], float]:
    """The step's one host synchronisation: every logged value (and what the divergence guard
    reads) in one transfer, the terms averaged over the ranks (identical on every rank).

    Returns ``(terms by name, None where absent; G's probed statistics; the gradient norm)``.
    """
    names = [k for k in TERMS if terms.get(k) is not None]
    stacked = torch.stack(
        [terms[k].detach().float() for k in names]
        + [v.float().to(terms["loss"].device) for v in probed.values()]
    )
    stacked = stage.dist.mean(stacked.to(grad_norm.device))
    numbers = torch.cat([stacked, grad_norm.float().reshape(1)]).tolist()
    values: dict[str, float | None] = dict.fromkeys(TERMS)
    values.update(zip(names, numbers[: len(names)], strict=True))
    probed_values = dict(zip(probed, numbers[len(names) : -1], strict=True))
    return values, probed_values, numbers[-1]
