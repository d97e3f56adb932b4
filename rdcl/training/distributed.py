"""Data-parallel training (PyTorch DDP) under ``torchrun``, on one machine or several.

``torchrun --nproc-per-node N [--nnodes M ...] -m rdcl train ...`` starts N*M processes (ranks);
:func:`setup_distributed` sees torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and joins the process group: NCCL when the run's device is a GPU
(rank uses ``cuda:LOCAL_RANK``), gloo on the CPU. Without that environment (or with one rank)
nothing changes: a single process, no process group.

Semantics (N ranks behave as one process with the same config):

- ``data.batch_size`` is the GLOBAL batch B; each rank draws B / N of it. Rank r takes samples
  ``[r B/N, (r+1) B/N)`` of the batch one process would draw at that step (samples are a pure
  function of (seed, step, sample index), see ``rdcl.data.PatchSampler``), so the ranks together
  hold exactly the single-process batch, foreground-oversampled samples included.
- Gradients: DDP averages the ranks' gradients. The BCE and deep-supervision terms are means over
  equal per-rank batches, so their average is the global mean. The batch Dice is a ratio of batch
  sums: its intersection and denominator are all-reduced (``rdcl.losses.soft_dice_loss(sync=True)``)
  and the relation matrices use the global batch mean (``rdcl.kernels`` all-reduces the mean
  features under torch.distributed); both hand each rank N times its share of the gradient of the
  one global loss, which DDP's average turns into exactly that gradient.
- The networks use InstanceNorm (no BatchNorm, no running statistics), so there is nothing to
  synchronise besides the gradients: no SyncBatchNorm is needed.
- Rank 0 alone writes: ``config.json`` (with a ``run`` record of world size and per-rank batch),
  ``log.jsonl`` (one record per step, terms averaged over the ranks), progress bars and the atomic
  checkpoints. Every rank reads the checkpoint on ``--resume``; a run may resume with another
  number of ranks when B is still divisible by it (the computation is then the same), otherwise
  :func:`per_rank_batch` raises a one-line error.
- Failures: a rank that raises exits non-zero and torchrun stops the other ranks; collectives and
  barriers time out after ``train.dist_timeout_s`` seconds, so a lost rank never hangs the job.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from rdcl.device import resolve_device
from rdcl.errors import ConfigError, RdclInputError

T = TypeVar("T")

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Environment variables torchrun sets for every rank."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 .. world_size-1); rank 0 writes every file.
        world_size: number of processes; 1 without torch.distributed.
        local_rank: rank on this machine (the GPU index under NCCL).
        backend: ``"nccl"``, ``"gloo"`` or None (single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """More than one rank."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes."""
        return self.rank == 0

    def per_rank_batch(self, global_batch: int) -> int:
        """``global_batch / world_size``; raises ``ValueError`` when it does not divide."""
        return per_rank_batch(global_batch, self.world_size)

    def record(self, global_batch: int) -> dict[str, Any]:
        """The run record written to ``config.json``/checkpoints: world size, per-rank and global
        batch, backend."""
        return {
            "world_size": self.world_size,
            "per_rank_batch": self.per_rank_batch(global_batch),
            "global_batch": int(global_batch),
            "backend": self.backend,
        }

    def shard(self, sampler: T) -> T | ShardedSampler:
        """This rank's share of ``sampler``'s batches (``sampler`` itself with one rank)."""
        if not self.active:
            return sampler
        return ShardedSampler(sampler, self.rank, self.world_size)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in ``DistributedDataParallel`` (``module`` itself with one rank).

        ``module.forward`` must run the whole network part of a step: DDP hooks ``forward`` only.
        """
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, gradient_as_bucket_view=True)

    def barrier(self) -> None:
        """Wait for every rank (no-op with one rank); times out after the group's timeout."""
        if self.active:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of ``values`` over the ranks (``values`` itself with one rank)."""
        if not self.active:
            return values
        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the other ranks (e.g. preprocessing into a shared cache:
        rank 0 writes it, the others reuse it)."""
        if not self.is_main:
            self.barrier()
        try:
            return fn()
        finally:
            if self.is_main:
                self.barrier()


def per_rank_batch(global_batch: int, world_size: int, *, option: str = "--nproc-per-node") -> int:
    """The per-rank batch of a global batch split over ``world_size`` ranks (``option``: the
    setting the message names as the source of the rank count).

    Raises:
        ConfigError: ``global_batch`` is not a multiple of ``world_size`` (a ``ValueError``).
    """
    if global_batch % world_size:
        raise ConfigError(
            f"data.batch_size is the global batch and must be a multiple of the number of ranks: "
            f"expected a multiple of {world_size}, found {global_batch} (set "
            f"data.batch_size={max(1, global_batch // world_size) * world_size} or change "
            f"{option})"
        )
    return global_batch // world_size


class ShardedSampler:
    """Rank ``rank`` of ``world_size``'s slice of every batch of ``sampler``.

    ``batch(step) = sampler.batch(step, range(rank * b, (rank + 1) * b))`` with
    ``b = sampler.batch_size / world_size``: the ranks' slices concatenated in rank order are the
    single-process batch (``rdcl.data.PatchSampler.batch``).
    """

    def __init__(self, sampler: Any, rank: int, world_size: int) -> None:
        b = per_rank_batch(int(sampler.batch_size), world_size)
        self.sampler = sampler
        self.seed = int(sampler.seed)
        self.batch_size = b
        self.indices: Sequence[int] = range(rank * b, (rank + 1) * b)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's samples of batch ``step``."""
        return self.sampler.batch(step, self.indices)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RdclInputError(
            f"environment variable {name} must be an integer, found {raw!r}"
        ) from exc


def env_rank() -> int:
    """This process's global rank from torchrun's ``RANK`` (0 when not launched by torchrun)."""
    return _env_int("RANK", 0)


def launched_distributed() -> bool:
    """True when torchrun (or an equivalent launcher) started this process as one of > 1 ranks."""
    return _env_int("WORLD_SIZE", 1) > 1


def _device_for_rank(device_name: str, local_rank: int, world_size: int) -> torch.device:
    """The device rank ``local_rank`` trains on: ``cuda:LOCAL_RANK`` for ``auto``/``cuda``."""
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type != "cuda" or world_size == 1:
        return device
    if device.index is not None:
        raise ConfigError(
            f"under torchrun each rank trains on cuda:LOCAL_RANK; expected train.device 'cuda' or "
            f"'auto', found {device_name!r}"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"rank with LOCAL_RANK={local_rank} needs cuda:{local_rank}, but this machine has "
            f"{count} GPU(s); use --nproc-per-node <= {count}"
        )
    return torch.device("cuda", local_rank)


def setup_distributed(
    device_name: str, timeout_s: float = 1800.0
) -> tuple[DistContext, torch.device]:
    """Join (or reuse) the process group and pick this rank's device.

    Args:
        device_name: ``train.device`` (``auto``, ``cpu``, ``cuda``...).
        timeout_s: collective/barrier timeout of a newly created group, seconds.

    Returns:
        ``(context, device)``. An existing process group (e.g. a caller that ran
        ``init_process_group`` itself) is used as is; torchrun's environment with WORLD_SIZE > 1
        creates one (NCCL for a CUDA device, gloo otherwise); anything else is a single process.
    """
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = _env_int("LOCAL_RANK", rank % max(1, torch.cuda.device_count() or 1))
        device = _device_for_rank(device_name, local, world)
        return DistContext(rank, world, local, str(dist.get_backend())), device
    if not launched_distributed():
        return DistContext(), resolve_device(device_name)
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise RdclInputError(
            f"WORLD_SIZE > 1 but the launcher set no {missing}; start distributed runs with "
            "torchrun --nproc-per-node N -m rdcl train ..."
        )
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _device_for_rank(device_name, local, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    extra: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        extra["device_id"] = device
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=float(timeout_s)), **extra)
    return DistContext(rank, world, local, backend), device
