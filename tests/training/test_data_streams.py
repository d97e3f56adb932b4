"""The training-side dataset adapters: round-robin mixing of several non-COVID sets."""

from __future__ import annotations

import pytest
from _training_fakes import FakeSampler, tiny_cfg

from rdcl.training.data_streams import MixedSampler, batch_stream


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mixed_sampler_streams_round_robin_through_the_loader(num_workers: int) -> None:
    """Several general sets (stage 1 with two --general folders) go through the real loader."""
    data_cfg = tiny_cfg().data
    first, second = FakeSampler(5, data_cfg), FakeSampler(6, data_cfg)
    mixed = MixedSampler([first, second])
    got = list(batch_stream(mixed, 1, 4, num_workers))
    assert len(got) == 3
    for step, batch in zip(range(1, 4), got, strict=True):
        want = (first, second)[step % 2].batch(step)
        assert batch["image"].equal(want["image"])
        assert batch["label"].equal(want["label"])
    assert not got[0]["image"].equal(got[1]["image"])
