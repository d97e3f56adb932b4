"""``make_loader(thread=True)`` / ``data.loader_thread``: batches computed ahead by one background
thread of the training process, in order, with errors and early stops handled."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from rdcl.config import ConfigError, DataConfig
from rdcl.data import PatchSampler, make_loader
from rdcl.data.sampling.loader import ThreadPrefetcher


def _sampler(augment_on: str) -> PatchSampler:
    rng = np.random.default_rng(0)
    cases = [
        (rng.standard_normal((1, 12, 24, 24)).astype(np.float32),
         (rng.random((12, 24, 24)) > 0.6).astype(np.uint8))
        for _ in range(2)
    ]  # fmt: skip
    return PatchSampler(cases, DataConfig(patch_size=(8, 16, 16)), seed=1, augment_on=augment_on)


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_thread_gives_the_inline_batches_in_order(augment_on):
    sampler = _sampler(augment_on)
    inline = list(make_loader(sampler, 3, 9, 0))
    threaded = list(make_loader(sampler, 3, 9, 0, thread=True, prefetch=3))
    assert len(threaded) == len(inline) == 6
    key = "image" if augment_on == "loader" else "source_image"
    for a, b in zip(inline, threaded, strict=True):
        assert torch.equal(a["case"], b["case"])
        for x, y in zip(list(a[key]), list(b[key]), strict=True):
            assert torch.equal(x, y)


def test_thread_runs_ahead_of_the_consumer():
    produced: list[int] = []
    ready = threading.Condition()

    def source():
        for i in range(10):
            with ready:
                produced.append(i)
                ready.notify_all()
            yield i

    it = iter(ThreadPrefetcher(source(), prefetch=2))
    assert next(it) == 0
    with ready:  # while the consumer holds item 0, the thread fills the queue (2) and holds one
        assert ready.wait_for(lambda: len(produced) >= 4, timeout=10)
    assert list(it) == list(range(1, 10))


def test_errors_reach_the_consumer_after_the_items_before_them():
    def source():
        yield from range(3)
        raise OSError("cache file vanished")

    got = []
    with pytest.raises(OSError, match="cache file vanished"):
        for item in ThreadPrefetcher(source(), prefetch=1):
            got.append(item)
    assert got == [0, 1, 2]


def test_an_early_stop_ends_the_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = {t.ident for t in threading.enumerate()}
    gen = iter(ThreadPrefetcher(endless(), prefetch=2))
    assert [next(gen) for _ in range(5)] == list(range(5))
    gen.close()  # what a `break` or garbage collection does
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not any(t.name == "rdcl-loader" for t in new):
            break
        time.sleep(0.01)
    assert not any(t.name == "rdcl-loader" and t.ident not in before for t in threading.enumerate())


def test_thread_with_workers_is_refused():
    with pytest.raises(ValueError, match="expected num_workers 0 with thread=True, found 2"):
        make_loader(_sampler("device"), 0, 2, 2, thread=True)
    with pytest.raises(ConfigError, match=r"expected data\.num_workers 0 with it, found 2"):
        DataConfig(loader_thread=True, num_workers=2)
    with pytest.raises(ValueError, match="prefetch must be >= 1"):
        ThreadPrefetcher([], prefetch=0)
