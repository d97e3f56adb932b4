"""Fixtures for the file-format tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny networks here are dominated by thread-pool overhead: one intra-op thread is as
    fast alone and many times faster when the 2 CI cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
