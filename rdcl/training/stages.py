"""The two training stages: :func:`pretrain_general` (stage 1) and :func:`train` (stage 2).

Stage 1, :func:`pretrain_general`: a single-encoder U-Net learns to segment the non-COVID lesions;
its encoder becomes G (or, for ``pretrain``, the whole network is fine-tuned).

Stage 2, :func:`train`: the configured method (``rdcl.training.methods``). For the dual-encoder
methods each step t follows Algorithm 1: draw a COVID batch X_c and a non-COVID batch X_n, then

    L = L_seg(D([G(X_c).detach(), T(X_c)]), Y_c)          -> T, D
      + lambda_G * ramp(t) * d(R_G(X_n), R_G(X_c))        -> G
      - lambda_T * ramp(t) * d(R_G(X_c).detach(), R_T(X_c)) -> T

with ONE optimiser over every trainable parameter and ONE backward of the summed loss. The routing
is a property of the graph, not of separate optimisers: the model detaches G's bottleneck where it
enters D, and the relation loss detaches R_G(X_c) inside d_t, so each term's gradient reaches only
its own parameters (tests/training check this on real steps). The global gradient-norm clip (12)
acts on the summed gradient, as in nnU-Net.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rdcl.config import Config, TrainConfig
from rdcl.data.device_augment import finish_batch
from rdcl.data.sampler import expected_padding
from rdcl.errors import CheckpointError, ConfigError, DatasetError
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.losses import (
    DeepSupervisionLoss,
    DiceBCELoss,
    describe_rampup,
    rampup,
    relation_consistency,
    resolved_rampup_steps,
)
from rdcl.model import build_network

from .data_streams import (
    DatasetInput,
    as_cached,
    as_list,
    batch_stream,
    dataset_meta,
    make_sampler,
    resolve_target_spacing,
)
from .distributed import setup_distributed
from .feature_stats import GeneralFeatureProbe
from .graphs import check_cuda_graphs, graph_step
from .loop import Stage, prepare_out_dir, reset_run, run_stage
from .methods import Method, build_for_method, get_method
from .recipe import recipe_meta
from .runlock import exit_on_sigterm, run_lock
from .schedule import anchor_parameters, make_optimizer
from .step import (
    StepForward,
    apply_backend_switches,
    compile_step,
    forward_precision,
    memory_format,
    prepare_network,
    to_device,
)

if TYPE_CHECKING:
    from rdcl.data.preprocess import CachedDataset

logger = logging.getLogger(__name__)

GENERAL_SEED_OFFSET = 1
"""Stage 2 draws X_n with seed ``train.seed + 1`` so it is independent of the X_c stream."""


def _seg_loss(sync: bool = False) -> DeepSupervisionLoss:
    """Deep-supervised Dice + BCE; ``sync``: batch Dice over the global DDP batch."""
    return DeepSupervisionLoss(DiceBCELoss(sync=sync))


def pretrain_general(
    cfg: Config,
    general_datasets: Sequence[DatasetInput],
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Stage 1: train a single-encoder U-Net on the non-COVID lesion sets (L_seg only).

    Args:
        cfg: resolved config; ``train.pretrain_steps`` steps, same optimiser and schedule as
            stage 2.
        general_datasets: non-COVID datasets (folders, ``DatasetSpec`` or ``CachedDataset``,
            see ``rdcl.training.data_streams``), mixed round-robin.
        out_dir: the stage folder (``config.json``, ``log.jsonl``, ``last.ckpt``, ``final.ckpt``).
        resume: continue from ``out_dir/last.ckpt``; overwrite: replace an existing run.
        cache_dir: where folders/specs are preprocessed (default ``out_dir/cache``).

    Returns:
        Path of ``final.ckpt`` (kind ``"single"``, stage ``"pretrain"``).

    Raises:
        RunExistsError, TrainingDivergedError, ValueError (no datasets or zero steps).
    """
    if not general_datasets:
        raise DatasetError("stage 1 needs at least one non-COVID dataset, found none")
    if cfg.train.pretrain_steps < 1:
        raise ConfigError(f"train.pretrain_steps must be >= 1, found {cfg.train.pretrain_steps}")
    cfg = resolve_target_spacing(cfg, general_datasets)
    ctx, device = setup_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    batch = ctx.per_rank_batch(cfg.data.batch_size)  # before anything is written
    check_cuda_graphs(cfg.train, device, ctx.world_size)
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"

    def prepare() -> list[CachedDataset]:
        if ctx.is_main:
            prepare_out_dir(out_dir, resume=resume, overwrite=overwrite)
        return [as_cached(d, cfg.data, cache) for d in general_datasets]

    general_datasets = ctx.main_first(prepare)  # rank 0 fills the cache, the others reuse it
    tcfg = cfg.train
    apply_backend_switches(tcfg, device)
    fmt = memory_format(tcfg, cfg.model.dim)
    torch.manual_seed(tcfg.seed)
    net = prepare_network(build_network(cfg.model, kind="single").to(device), tcfg, cfg.model.dim)
    optimizer = make_optimizer(net.parameters(), tcfg)
    sampler = ctx.shard(make_sampler(list(general_datasets), cfg.general_data(), seed=tcfg.seed))
    seg_loss = _seg_loss(sync=ctx.active)
    step_net = graph_step(StepForward(net), cfg, device, batch=batch, inputs=1)
    forward = compile_step(ctx.wrap(step_net, device), tcfg)

    def compute(step: int, batch: dict) -> tuple[dict, None]:
        batch = finish_batch(batch, device)  # data.augment_on: device augments here
        with forward_precision(tcfg, device):
            logits = forward(to_device(batch["image"], device, fmt))[0]
        seg = seg_loss(logits, batch["label"])
        return {"loss": seg, "seg": seg}, None

    streams = (cfg.data.num_workers, cfg.data.loader_thread)
    stage = Stage(
        name="pretrain",
        cfg=cfg,
        net=net,
        kind="single",
        out_dir=out_dir,
        total_steps=cfg.train.pretrain_steps,
        compute=compute,
        batches=lambda s: batch_stream(sampler, s, cfg.train.pretrain_steps, *streams),
        meta={**dataset_meta(list(general_datasets)), **recipe_meta()},
        dist=ctx,
        notes={"xn_padding": padding_record(general_datasets, cfg)},
    )
    with run_lock(out_dir), exit_on_sigterm():
        if ctx.is_main:  # rank 0 alone touches the run folder
            reset_run(out_dir, resume=resume, overwrite=overwrite)
        return run_stage(stage, optimizer, resume=resume, progress=progress)


PADDING_WARN = 0.25
"""Expected padding fraction of a non-COVID set's X_n samples above which a run warns."""


def padding_record(datasets: Sequence[CachedDataset], cfg: Config) -> dict[str, float]:
    """The expected padding fraction of X_n samples per non-COVID set at
    ``cfg.general_data().patch_size`` (:func:`rdcl.data.sampler.expected_padding`), logged and
    recorded in the stage's ``config.json`` (``run.xn_padding``); a warning names every set above
    :data:`PADDING_WARN` (mostly zeros teach G nothing about lesions)."""
    patch = cfg.general_data().patch_size
    record = {}
    for i, d in enumerate(datasets):
        if not hasattr(d, "__len__"):  # a stand-in without cases (tests)
            continue
        info = getattr(d, "info", None) or {}
        name = str(info.get("dataset", {}).get("name") or getattr(d, "cache_dir", f"set {i + 1}"))
        record[name] = round(expected_padding(d, patch), 4)
    for name, frac in record.items():
        log = logger.warning if frac > PADDING_WARN else logger.info
        log("X_n from %s: %.0f%% of each %s patch is padding on average%s", name, 100 * frac,
            "x".join(map(str, patch)), " (set data.general_patch_size to the lesion data's "
            "size)" if frac > PADDING_WARN else "")  # fmt: skip
    return record


def load_pretrained(path: str | Path, cfg: Config) -> dict[str, torch.Tensor]:
    """The model state of a stage-1 checkpoint, checked against ``cfg.model``.

    Raises:
        CheckpointError: not a stage-1 single-encoder checkpoint, or another architecture.
    """
    ckpt = load_checkpoint(path)
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


def method_terms(
    net: torch.nn.Module,
    method: Method,
    *,
    x_c: torch.Tensor,
    y_c: torch.Tensor,
    x_n: torch.Tensor | None,
    step: int,
    cfg: TrainConfig,
    seg_loss: DeepSupervisionLoss,
    forward: Callable[..., tuple] | None = None,
    device: torch.device | None = None,
    probe: GeneralFeatureProbe | None = None,
) -> tuple[dict[str, torch.Tensor | None], float | None]:
    """The loss terms of one stage-2 step (Algorithm 1 for the dual-encoder methods).

    Args:
        net: the method's network (train mode).
        x_c, y_c: COVID images and {0, 1} labels, (B, 1, *patch).
        x_n: non-COVID images (B', 1, *patch); used when ``method.use_lg``.
        step: 0-based step (drives the ramp, over ``resolved_rampup_steps(cfg)`` steps).
        forward: the step's network call, ``forward(x_c, x_n) -> (logits, g_c, t_c, g_n)``
            (:class:`rdcl.training.step.StepForward`, possibly in DDP and compiled); default
            ``StepForward(net, batched=cfg.batched_general)``.
        device: the device type for ``cfg.autocast`` (default: ``x_c``'s).
        probe: keeps this step's G(X_c) bottleneck for the loop's ``g_rank``/``g_rms`` log
            entries (a reference, no copy; nothing is computed here).

    Returns:
        ``(terms, ramp)``: ``terms`` maps ``loss`` (the sum to back-propagate), ``seg``, and for
        rdcl_g/rdcl ``d_g``, ``d_t``, ``loss_g`` (and ``loss_t`` for rdcl; ``d_t`` is logged by
        rdcl_g as a diagnostic only) to scalar tensors, absent terms to None; ``ramp`` is None
        for methods without relation losses.
    """
    if method.use_lg and x_n is None:
        raise ValueError(f"method {method.name!r} needs a non-COVID batch x_n, found None")
    forward = forward if forward is not None else StepForward(net, batched=cfg.batched_general)
    with forward_precision(cfg, device if device is not None else x_c.device):
        logits, g_c, t_c, g_n = forward(x_c, x_n if method.use_lg else None)
    if probe is not None:
        probe.keep(g_c)
    seg = seg_loss(logits, y_c)
    terms: dict[str, torch.Tensor | None] = {"loss": seg, "seg": seg}
    if not method.use_lg:
        return terms, None
    ramp = rampup(step, resolved_rampup_steps(cfg))
    rel = relation_consistency(
        g_n,
        g_c,
        t_c,
        lambda_g=cfg.lambda_g,
        lambda_t=cfg.lambda_t,
        ramp=ramp,
        reduction=cfg.relation_reduction,
    )
    terms.update(d_g=rel["d_g"], d_t=rel["d_t"], loss_g=rel["loss_g"])
    terms["loss"] = seg + rel["loss_g"]
    if method.use_lt:
        terms["loss_t"] = rel["loss_t"]
        terms["loss"] = terms["loss"] + rel["loss_t"]
    return terms, ramp


def train(
    cfg: Config,
    covid: DatasetInput,
    general: DatasetInput | Sequence[DatasetInput] | None,
    out_dir: str | Path,
    *,
    pretrained: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Stage 2: train ``cfg.train.method`` on the COVID set (Algorithm 1 for rdcl/rdcl_g).

    Args:
        cfg: resolved config (``train.steps`` steps).
        covid: the COVID dataset (X_c): a folder, ``DatasetSpec`` or ``CachedDataset``.
        general: non-COVID dataset(s) (X_n), mixed round-robin; needed by ``rdcl_g`` and
            ``rdcl`` only (ignored by the other methods).
        out_dir: the stage folder.
        pretrained: stage-1 ``final.ckpt``; needed by every method but ``baseline``.
        resume: continue from ``out_dir/last.ckpt`` (bitwise-exact on the CPU).
        overwrite: replace an existing run in ``out_dir``.
        cache_dir: where folders/specs are preprocessed (default ``out_dir/cache``).

    Returns:
        Path of ``out_dir/final.ckpt``.

    Raises:
        RunExistsError, TrainingDivergedError, CheckpointError, ValueError (missing inputs).
    """
    method = get_method(cfg.train.method)
    if cfg.train.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, found {cfg.train.steps}")
    cfg = resolve_target_spacing(cfg, covid)
    generals = as_list(general)
    if method.needs_general_batches and not generals:
        raise DatasetError(f"method {method.name!r} needs a non-COVID dataset for L_G, found none")
    if method.needs_pretrained and pretrained is None:
        raise ConfigError(
            f"method {method.name!r} needs a stage-1 network pre-trained on non-COVID lesions; "
            "pass pretrained=<stage-1 final.ckpt>"
        )
    state = load_pretrained(pretrained, cfg) if method.needs_pretrained else None
    ctx, device = setup_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    batch = ctx.per_rank_batch(cfg.data.batch_size)  # before anything is written
    check_cuda_graphs(cfg.train, device, ctx.world_size)
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"

    def prepare() -> tuple[CachedDataset, list[DatasetInput]]:
        if ctx.is_main:
            prepare_out_dir(out_dir, resume=resume, overwrite=overwrite)
        cached = as_cached(covid, cfg.data, cache)
        if not method.needs_general_batches:
            return cached, generals
        return cached, [as_cached(d, cfg.data, cache) for d in generals]

    covid, generals = ctx.main_first(prepare)  # rank 0 fills the cache, the others reuse it
    if method.use_lg and ctx.is_main:
        logger.info("train: relation weights ramped up over %s", describe_rampup(cfg.train))
    tcfg, total, workers = cfg.train, cfg.train.steps, cfg.data.num_workers
    apply_backend_switches(tcfg, device)
    fmt = memory_format(tcfg, cfg.model.dim)
    torch.manual_seed(tcfg.seed)
    net = build_for_method(cfg.model, method, state).to(device)
    net = prepare_network(net, tcfg, cfg.model.dim)
    general = net.general.parameters() if hasattr(net, "general") else ()
    optimizer = make_optimizer(net.parameters(), tcfg, general=general)
    if hasattr(net, "general"):  # G's stage-1 weights are theta_0 (before any resume loads)
        anchor_parameters(optimizer, net.general.parameters(), tcfg.general_anchor)
    probe = GeneralFeatureProbe() if hasattr(net, "general") else None
    covid_sampler = ctx.shard(make_sampler(covid, cfg.data, seed=tcfg.seed))
    general_sampler = (
        ctx.shard(make_sampler(generals, cfg.general_data(), seed=tcfg.seed + GENERAL_SEED_OFFSET))
        if method.needs_general_batches
        else None
    )
    seg_loss = _seg_loss(sync=ctx.active)
    step_net = StepForward(net, batched=tcfg.batched_general)
    step_net = graph_step(step_net, cfg, device, batch=batch, inputs=2 if method.use_lg else 1)
    forward = compile_step(ctx.wrap(step_net, device), tcfg)

    def compute(step: int, batch: tuple[dict, dict | None]) -> tuple[dict, float | None]:
        xc_batch = finish_batch(batch[0], device)  # data.augment_on: device augments here
        xn_batch = None if batch[1] is None else finish_batch(batch[1], device)
        x_n = None if xn_batch is None else to_device(xn_batch["image"], device, fmt)
        return method_terms(
            net,
            method,
            x_c=to_device(xc_batch["image"], device, fmt),
            y_c=xc_batch["label"],
            x_n=x_n,
            step=step,
            cfg=tcfg,
            seg_loss=seg_loss,
            forward=forward,
            device=device,
            probe=probe,
        )

    def batches(start: int) -> Iterable[tuple[dict, dict | None]]:
        thread = cfg.data.loader_thread
        xc = batch_stream(covid_sampler, start, total, workers, thread)
        if general_sampler is None:
            return ((b, None) for b in xc)
        xn = batch_stream(general_sampler, start, total, workers, thread)
        return zip(xc, xn, strict=True)

    stage = Stage(
        name="train",
        cfg=cfg,
        net=net,
        kind=method.kind,
        out_dir=out_dir,
        total_steps=total,
        compute=compute,
        batches=batches,
        meta={
            **dataset_meta(covid, generals if method.needs_general_batches else ()),
            **recipe_meta(),
        },
        dist=ctx,
        probe=None if probe is None else probe.stats,
        notes={"xn_padding": padding_record(generals, cfg)} if general_sampler else {},
    )
    with run_lock(out_dir), exit_on_sigterm():
        if ctx.is_main:  # rank 0 alone touches the run folder
            reset_run(out_dir, resume=resume, overwrite=overwrite)
        return run_stage(stage, optimizer, resume=resume, progress=progress)
