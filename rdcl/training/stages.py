"""The two training stages and the run of a plan: :func:`run_plan` runs a checked
:class:`~rdcl.training.plan.RunPlan` (one lock, one cache step, one reset), building each stage
with :func:`pretrain_stage` (stage 1) and :func:`train_stage` (stage 2), which only build;
:func:`pretrain_general` and :func:`train` are the one-stage entry points (plan, then run).

Stage 1: a single-encoder U-Net learns to segment the non-COVID lesions;
its encoder becomes G (or, for ``pretrain``, the whole network is fine-tuned).

Stage 2: the configured method (``rdcl.training.methods``). For the dual-encoder
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

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rdcl.config import Config, TrainConfig
from rdcl.data.sampling.device_augment import finish_batch
from rdcl.data.sampling.sampler import expected_padding
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
    batch_stream,
    dataset_meta,
    make_sampler,
)
from .distributed import DistContext, env_rank, setup_distributed
from .feature_stats import GeneralFeatureProbe
from .graphs import check_cuda_graphs, graph_step
from .loop import Stage, reset_run, run_stage
from .methods import Method, build_for_method
from .plan import RunPlan, load_pretrained, plan_stage
from .recipe import recipe_meta
from .runlock import RunInUseError, exit_on_sigterm, run_lock
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
    from rdcl.data.preprocessing.preprocess import CachedDataset

logger = logging.getLogger(__name__)

GENERAL_SEED_OFFSET = 1
"""Stage 2 draws X_n with seed ``train.seed + 1`` so it is independent of the X_c stream."""


def _seg_loss(sync: bool = False) -> DeepSupervisionLoss:
    """Deep-supervised Dice + BCE; ``sync``: batch Dice over the global DDP batch."""
    return DeepSupervisionLoss(DiceBCELoss(sync=sync))


def run_plan(plan: RunPlan, *, progress: bool = True) -> Path:
    """Run a checked :class:`~rdcl.training.plan.RunPlan`: stage 1 when it has one, then stage 2
    when it has a method. The run folder's lock is taken once and held from preprocessing to the
    end; the datasets are preprocessed once (rank 0 first, the other ranks reuse its cache) and
    each stage folder is reset once (stale temporary files; the old run on ``overwrite``).
    Returns the last stage's ``final.ckpt``."""
    cfg = plan.cfg
    ctx, device = setup_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    batch = ctx.per_rank_batch(cfg.data.batch_size)  # before anything is written
    check_cuda_graphs(cfg.train, device, ctx.world_size)
    undo = removed_unless_trained(plan.out_dir) if plan.undo_fresh else contextlib.nullcontext()
    with undo:
        if ctx.is_main:  # rank 0 alone touches the run folder
            for folder in plan.folders:
                folder.mkdir(parents=True, exist_ok=True)
        with run_lock(plan.out_dir), exit_on_sigterm():
            covid, generals = ctx.main_first(lambda: _cached(plan))
            if ctx.is_main:
                for folder in plan.folders:
                    reset_run(folder, resume=plan.resume, overwrite=plan.overwrite)
            state = plan.pretrained_state
            if plan.stage1_dir is not None:
                if plan.announce:
                    logger.info("stage 1: pre-training G on %d non-COVID dataset(s)", len(generals))
                stage, optimizer = pretrain_stage(
                    cfg, generals, plan.stage1_dir, ctx=ctx, device=device, batch=batch
                )
                final = run_stage(stage, optimizer, resume=plan.resume, progress=progress)
                if plan.method is None:
                    return final
                state = load_pretrained(final, cfg) if plan.method.needs_pretrained else None
            assert plan.method is not None and covid is not None
            if plan.announce:
                logger.info("stage 2: training %s", plan.method.name)
            stage, optimizer = train_stage(
                cfg, plan.method, covid, generals, plan.out_dir, state,
                ctx=ctx, device=device, batch=batch,
            )  # fmt: skip
            return run_stage(stage, optimizer, resume=plan.resume, progress=progress)


def _cached(plan: RunPlan) -> tuple[CachedDataset | None, list[CachedDataset]]:
    """The plan's datasets preprocessed into its cache (reads and checks every case)."""
    data, cache, stats = plan.cfg.data, plan.cache_dir, plan.stats
    covid = None if plan.covid is None else as_cached(plan.covid, data, cache, stats)
    return covid, [as_cached(g, data, cache, stats) for g in plan.generals]


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
    plan = plan_stage(
        cfg, "pretrain", None, general_datasets, out_dir,
        resume=resume, overwrite=overwrite, cache_dir=cache_dir,
    )  # fmt: skip
    return run_plan(plan, progress=progress)


def pretrain_stage(
    cfg: Config,
    general_datasets: Sequence[CachedDataset],
    out_dir: Path,
    *,
    ctx: DistContext,
    device: torch.device,
    batch: int,
) -> tuple[Stage, torch.optim.Optimizer]:
    """Stage 1's network, optimiser and step on the preprocessed non-COVID sets, as a
    :class:`~rdcl.training.loop.Stage` for :func:`~rdcl.training.loop.run_stage` (``batch``:
    the per-rank batch)."""
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
    return stage, optimizer


PADDING_WARN = 0.25
"""Expected padding fraction of a non-COVID set's X_n samples above which a run warns."""


def padding_record(datasets: Sequence[CachedDataset], cfg: Config) -> dict[str, float]:
    """The expected padding fraction of X_n samples per non-COVID set at
    ``cfg.general_data().patch_size`` (:func:`rdcl.data.sampling.sampler.expected_padding`), logged
    and recorded in the stage's ``config.json`` (``run.xn_padding``); a warning names every set
    above :data:`PADDING_WARN` (mostly zeros teach G nothing about lesions)."""
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
    plan = plan_stage(
        cfg, "train", covid, general, out_dir,
        pretrained=pretrained, resume=resume, overwrite=overwrite, cache_dir=cache_dir,
    )  # fmt: skip
    return run_plan(plan, progress=progress)


def train_stage(
    cfg: Config,
    method: Method,
    covid: CachedDataset,
    generals: Sequence[CachedDataset],
    out_dir: Path,
    state: dict[str, torch.Tensor] | None,
    *,
    ctx: DistContext,
    device: torch.device,
    batch: int,
) -> tuple[Stage, torch.optim.Optimizer]:
    """Stage 2's network (from the stage-1 model ``state`` when the method starts from one),
    optimiser and step (Algorithm 1) on the preprocessed sets, as a
    :class:`~rdcl.training.loop.Stage` for :func:`~rdcl.training.loop.run_stage`; ``generals``
    (X_n) are used when the method needs them."""
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
    return stage, optimizer


@contextlib.contextmanager
def removed_unless_trained(out_dir: Path) -> Iterator[None]:
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
