"""``--format aoti``: the network through ``torch.export`` + AOTInductor into a ``.pt2`` package.

Only the NETWORK is compiled (static shape: ``tile_batch`` tiles of the training patch; smaller
last batches are zero-padded); normalisation, resampling and the sliding window stay in the
Python predictor, which runs the compiled network
(:class:`~rdcl.inference.exported.CompiledNetwork`). ``rdcl.json`` and
``config.json`` are stored in the package metadata under ``rdcl_json`` and ``config_json``.
Compiling needs a C++ compiler (Inductor's CPU backend) and takes minutes for large networks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdcl.formats.exported import load_package
from rdcl.inference.exported import CompiledNetwork


class _FirstOutput(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]


def compile_network(predictor: Any, path: str | Path, meta: dict, config: dict) -> Path:
    """``torch.export`` the predictor's network on (tile_batch, 1, *patch) and package it with
    AOTInductor at ``path`` (a ``.pt2`` zip). Raises RuntimeError when compilation fails."""
    patch = tuple(predictor.config.data.patch_size)
    example = torch.zeros((predictor.tile_batch, 1, *patch), device=predictor.device)
    wrapped = _FirstOutput(predictor.network.eval()).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecation noise
        program = torch.export.export(wrapped, (example,))
        meta = {**meta, "network": "aoti"}
        torch._inductor.aoti_compile_and_package(
            program,
            package_path=str(path),
            inductor_configs={
                "aot_inductor.metadata": {
                    "rdcl_json": json.dumps(meta, sort_keys=True),
                    "config_json": json.dumps(config, sort_keys=True),
                }
            },
        )
    return Path(path)


def load_network(path: str | Path, device: torch.device | str = "cpu") -> CompiledNetwork:
    """The compiled network of a package as an rdcl-style module."""
    runner, meta, _ = load_package(path, device)
    return CompiledNetwork(runner, int(meta["tile_batch"]))
