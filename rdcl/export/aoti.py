"""``--format aoti``: the network through ``torch.export`` + AOTInductor into a ``.pt2`` package.

Only the NETWORK is compiled (static shape: ``tile_batch`` tiles of the training patch; smaller
last batches are zero-padded); normalisation, resampling and the sliding window stay in the
Python predictor, which runs the compiled network (:class:`CompiledNetwork`). ``rdcl.json`` and
``config.json`` are stored in the package metadata under ``rdcl_json`` and ``config_json``.
Compiling needs a C++ compiler (Inductor's CPU backend) and takes minutes for large networks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdcl.errors import RdclInputError
from rdcl.export.metadata import parse_metadata


class CompiledNetwork(nn.Module):
    """An nn.Module face for a loaded AOTInductor network (fixed batch ``tile_batch``).

    ``forward(x (B <= tile_batch, 1, *patch)) -> [logits (B, 1, *patch)]`` like rdcl networks.
    """

    def __init__(self, runner: Any, tile_batch: int) -> None:
        super().__init__()
        self.runner = runner
        self.tile_batch = tile_batch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        if b > self.tile_batch:
            raise ValueError(f"compiled for {self.tile_batch} tiles per call, found {b}")
        if b < self.tile_batch:
            pad = x.new_zeros((self.tile_batch - b, *x.shape[1:]))
            x = torch.cat([x, pad])
        out = self.runner(x.contiguous())
        first = out[0] if isinstance(out, list | tuple) else out
        return [first[:b]]


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


PACKAGE_LOGGER = "torch._inductor.package"
"""torch's logger that warns "Loading outdated pt2 file" for any package without its version
record (random bytes included) before the load fails; rdcl's own checks say what is wrong."""


@contextlib.contextmanager
def _quiet_package_log() -> Iterator[None]:
    """Hold back torch's package-loader warnings while a ``.pt2`` file is opened, so a bad file
    gives rdcl's one error line and nothing before it."""
    log = logging.getLogger(PACKAGE_LOGGER)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load_package(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, dict, dict]:
    """``(runner, rdcl.json, config.json)`` of an ``rdcl export --format aoti`` package."""
    try:
        with warnings.catch_warnings(), _quiet_package_log():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecation
            runner = torch._inductor.aoti_load_package(str(path))
        md = runner.get_metadata()
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RdclInputError(f"{path}: not a loadable AOTInductor package ({first})") from None
    meta, config = parse_metadata(str(path), md.get("rdcl_json", ""), md.get("config_json", ""))
    dev = torch.device(device)
    if dev.type != "cpu" and md.get("AOTI_DEVICE_KEY", "cpu") == "cpu":
        raise RdclInputError(f"{path} was compiled for the CPU; expected --device cpu")
    return runner, meta, config


def load_network(path: str | Path, device: torch.device | str = "cpu") -> CompiledNetwork:
    """The compiled network of a package as an rdcl-style module."""
    runner, meta, _ = load_package(path, device)
    return CompiledNetwork(runner, int(meta["tile_batch"]))
