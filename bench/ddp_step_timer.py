"""Time the rdcl (dual-encoder) training step as one process or as one rank of a gloo DDP job.

``python bench/ddp_step_timer.py OUT.json --global-batch B`` runs 1 process with batch B;
``torchrun --nproc-per-node 2 bench/ddp_step_timer.py OUT.json --global-batch B`` runs 2 ranks
with batch B / 2 each (``rdcl.training.distributed``: DDP-wrapped ``StepForward``, batch Dice
and relation means all-reduced, the logged terms averaged: what ``rdcl train`` under torchrun
does per step). Network: ``tiny3d`` (or ``--preset``) on ``--patch``, synthetic inputs made
once per rank (the loader is not timed here). After ``--warmup`` steps, ``--steps`` steps are
timed between two barriers; rank 0 writes ``OUT.json`` with the seconds, steps, world size,
per-rank and global batch and threads per process. Invoked by ``bench/test_bench_ddp.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from rdcl.config import preset
from rdcl.losses import DeepSupervisionLoss, DiceBCELoss
from rdcl.training.distributed import setup_distributed
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import clip_gradients_tensor, make_optimizer, set_lr
from rdcl.training.stages import method_terms
from rdcl.training.step import StepForward


def main() -> None:
    """Parse the arguments, run the timed steps, write the JSON record (rank 0)."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--global-batch", type=int, default=4)
    p.add_argument("--preset", default="tiny3d")
    p.add_argument("--patch", default="16,64,64")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = preset(args.preset)
    patch = tuple(int(v) for v in args.patch.split(","))
    data = dataclasses.replace(cfg.data, patch_size=patch, batch_size=args.global_batch)
    train = dataclasses.replace(cfg.train, method="rdcl", device="cpu", rampup_steps=1)
    cfg = cfg.replace(data=data, train=train)
    ctx, device = setup_distributed("cpu", 600.0)
    batch = ctx.per_rank_batch(args.global_batch)
    method = get_method("rdcl")
    torch.manual_seed(0)
    state = build_for_method(cfg.model, get_method("baseline"), None).state_dict()
    net = build_for_method(cfg.model, method, state).to(device)
    optimizer = make_optimizer(net.parameters(), cfg.train)
    params = [q for g in optimizer.param_groups for q in g["params"]]
    seg_loss = DeepSupervisionLoss(DiceBCELoss(sync=ctx.active))
    forward = ctx.wrap(StepForward(net, batched=cfg.train.batched_general), device)
    g = torch.Generator().manual_seed(1 + ctx.rank)
    shape = (batch, cfg.model.in_channels, *patch)
    x_c, x_n = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    y_c = (torch.rand(shape, generator=g) > 0.9).float()

    def step(i: int) -> None:
        set_lr(optimizer, cfg.train.lr)
        optimizer.zero_grad(set_to_none=True)
        terms, _ = method_terms(
            net, method, x_c=x_c, y_c=y_c, x_n=x_n, step=i, cfg=cfg.train,
            seg_loss=seg_loss, forward=forward, device=device,
        )  # fmt: skip
        terms["loss"].backward()
        norm = clip_gradients_tensor(params, cfg.train.grad_clip)
        values = torch.stack([t.detach().float() for t in terms.values() if t is not None])
        torch.cat([ctx.mean(values), norm.reshape(1)]).tolist()  # the step's one host transfer
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    ctx.barrier()
    tic = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    ctx.barrier()
    seconds = time.perf_counter() - tic
    if ctx.is_main:
        record = {
            "seconds": seconds,
            "steps": args.steps,
            "world_size": ctx.world_size,
            "per_rank_batch": batch,
            "global_batch": args.global_batch,
            "threads_per_process": args.threads,
            "preset": args.preset,
            "patch": list(patch),
        }
        with open(args.out, "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    main()
