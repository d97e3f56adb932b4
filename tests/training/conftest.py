"""Fixtures for the training tests (helpers live in ``_training_fakes``)."""

from __future__ import annotations

import pytest
import torch
from _training_fakes import FakeSampler, fake_dataset, tiny_cfg

from rdcl.training import stages


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny networks here are dominated by thread-pool overhead: one intra-op thread is as
    fast alone and many times faster when the 2 CI cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_streams(monkeypatch):
    """Route stages' sampler/loader to :class:`FakeSampler`; returns a dict recording the steps
    each stream was asked for."""
    calls: dict[str, list[int]] = {"steps": []}

    def make_sampler(datasets, data_cfg, *, seed):
        return FakeSampler(seed, data_cfg)

    def batch_stream(sampler, start, stop, num_workers, thread=False):
        for s in range(start, stop):
            calls["steps"].append(s)
            yield sampler.batch(s)

    monkeypatch.setattr(stages, "make_sampler", make_sampler)
    monkeypatch.setattr(stages, "batch_stream", batch_stream)
    return calls


@pytest.fixture(scope="session")
def pretrained_ckpt(tmp_path_factory):
    """A stage-1 checkpoint for the tiny config (2 steps on stand-in data)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "make_sampler", lambda d, c, *, seed: FakeSampler(seed, c))
    mp.setattr(
        stages,
        "batch_stream",
        lambda s, a, b, n, thread=False: (s.batch(i) for i in range(a, b)),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("stage1")
        return stages.pretrain_general(tiny_cfg(), [fake_dataset("general")], out, progress=False)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
