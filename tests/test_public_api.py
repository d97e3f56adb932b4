"""The packages' ``__all__`` name what users call, and every listed name exists."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "rdcl.training": {
        "FINAL",
        "LAST",
        "LOG_NAME",
        "PRETRAIN_DIR",
        "CheckpointError",
        "RunExistsError",
        "TrainingDivergedError",
        "find_checkpoint",
        "load_checkpoint",
        "pretrain_general",
        "read_log",
        "run_pretraining",
        "run_training",
        "train",
    },
    "rdcl.demo": {"run_demo"},
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_lists_the_public_api_only(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
