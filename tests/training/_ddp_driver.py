"""Driver for ``test_ddp_training.py``: one training run (stage 1 + rdcl stage 2) on stand-in array
datasets drawn by the real ``PatchSampler``, as one process (``python _ddp_driver.py OUT``) or as
one rank of a DDP job (``torchrun --nproc-per-node 2 _ddp_driver.py OUT``).

Options (after OUT): ``--steps N`` (stage 2 steps, default 3; stage 1 has 2), ``--resume``,
``--stop-at K`` (raise before stage-2 step K, after its checkpoint), ``--kill-rank R`` (rank R
SIGKILLs itself at stage-1 step 1), ``--raise-rank R`` (rank R raises at stage-1 step 1).
``RDCL_DDP_DEVICE=cuda`` trains on the GPUs (NCCL) instead of the CPU (gloo).
Every rank writes ``OUT/grads_rank<r>.pt``: per stage, the list of the gradients each step
handed to the clip (after DDP's all-reduce).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

import numpy as np
import torch

torch.set_num_threads(1)
DEVICE = os.environ.get("RDCL_DDP_DEVICE", "cpu")
"""``cpu`` (gloo) or ``cuda`` (NCCL, one GPU per rank: bench/gpu_check.sh on >= 2 GPUs)."""
if DEVICE != "cpu":
    torch.backends.cudnn.deterministic = True

from rdcl.config import preset  # noqa: E402
from rdcl.data.preprocessing.preprocess import IntensityStats  # noqa: E402
from rdcl.training import loop, run_training  # noqa: E402


class ArrayDataset:
    """Stand-in for a ``CachedDataset``: smooth random 2D images whose bright blobs are labels."""

    def __init__(self, name: str, seed: int, n: int = 3, shape: tuple[int, int] = (40, 44)):
        rng = np.random.default_rng(seed)
        self.images, self.labels = [], []
        for _ in range(n):
            noise = rng.standard_normal(shape).astype(np.float32)
            kernel = np.ones(5, np.float32) / 5
            smooth = np.apply_along_axis(np.convolve, 0, noise, kernel, "same")
            smooth = np.apply_along_axis(np.convolve, 1, smooth, kernel, "same") * 3
            self.images.append(smooth[None].astype(np.float32))
            self.labels.append((smooth > 0.8).astype(np.uint8))
        self.stats = IntensityStats(mean=0.0, std=1.0, lo=-3.0, hi=3.0)
        self.dim = 2
        self.normalization = "window"
        self.window = (0.0, 255.0)
        self.info = {"dataset": {"name": name, "dim": 2}}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]

    def foreground(self, i: int) -> np.ndarray:
        return np.argwhere(self.labels[i] > 0).astype(np.int32)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-at", type=int, default=-1)
    p.add_argument("--kill-rank", type=int, default=-1)
    p.add_argument("--raise-rank", type=int, default=-1)
    args = p.parse_args()
    rank = int(os.environ.get("RANK", "0"))

    cfg = preset("tiny2d")
    data = dataclasses.replace(cfg.data, patch_size=(32, 32), batch_size=4, num_workers=0)
    train = dataclasses.replace(
        cfg.train,
        method="rdcl",
        pretrain_steps=2,
        steps=args.steps,
        rampup_steps=2,
        checkpoint_every=1,
        device=DEVICE,
        tf32=False,  # the equality to 1e-5 is checked in fp32
        seed=5,
        lr=0.02,
        dist_timeout_s=60.0,
    )
    cfg = cfg.replace(data=data, train=train)

    grads: dict[str, list[list[torch.Tensor]]] = {"pretrain": [], "train": []}
    current = {"stage": "pretrain"}
    real_clip, real_lr = loop.clip_gradients_tensor, loop.poly_lr

    def recording_clip(params, max_norm):
        grads[current["stage"]].append([p.grad.detach().clone() for p in params])
        return real_clip(params, max_norm)

    def checked_lr(step, total, base, exponent=0.9):
        # stage 2 is the one with train.steps steps (pretrain_steps differs)
        current["stage"] = "train" if total == cfg.train.steps else "pretrain"
        if current["stage"] == "train" and step == args.stop_at:
            raise RuntimeError(f"planned stop before step {step}")
        if current["stage"] == "pretrain" and step == 1:
            if rank == args.kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)
            if rank == args.raise_rank:
                raise RuntimeError(f"planned failure on rank {rank}")
        return real_lr(step, total, base, exponent)

    loop.clip_gradients_tensor = recording_clip
    loop.poly_lr = checked_lr
    try:
        run_training(
            cfg,
            ArrayDataset("covid", 1),
            [ArrayDataset("general", 2)],
            args.out,
            resume=args.resume,
            progress=False,
        )
    finally:
        torch.save(grads, os.path.join(args.out, f"grads_rank{rank}.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
