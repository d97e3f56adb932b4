"""Global-batch relation matrix under torch.distributed: 2 gloo processes on CPU."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rdcl.kernels import relation_matrix, relation_matrix_reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, full: torch.Tensor, weight: torch.Tensor, out: dict) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        local = full[[0, 1]] if rank == 0 else full[[2]]  # unequal local batches: 2 + 1
        x = local.clone().requires_grad_(True)
        r = relation_matrix(x)
        (grad,) = torch.autograd.grad((r * weight).sum(), x)
        out[rank] = (r.detach(), grad)
    finally:
        dist.destroy_process_group()


def _check_global_batch_mean() -> None:
    """2 spawned ranks (each in this process's Triton mode: the environment is inherited)."""
    full = torch.randn(3, 17, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(17, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = mp.Manager().dict()
    mp.start_processes(
        _worker, args=(_free_port(), full, weight, out), nprocs=2, start_method="spawn"
    )
    x = full.clone().requires_grad_(True)
    r = relation_matrix_reference(x)
    (grad,) = torch.autograd.grad((r * weight).sum(), x)
    for rank, rows in ((0, [0, 1]), (1, [2])):
        r_rank, grad_rank = out[rank]
        torch.testing.assert_close(r_rank, r, rtol=1e-10, atol=1e-12)
        # each rank's gradient is that of the sum of both ranks' (identical) losses: 2x the
        # single-process gradient; DDP's average over the 2 ranks brings it back to 1x
        torch.testing.assert_close(grad_rank, 2 * grad[rows], rtol=1e-9, atol=1e-12)


def test_batch_mean_covers_the_global_batch(compiled) -> None:
    _check_global_batch_mean()  # CPU tensors: the reference path


def test_batch_mean_covers_the_global_batch_in_the_kernels(interpret) -> None:
    _check_global_batch_mean()  # the Triton interpreter
