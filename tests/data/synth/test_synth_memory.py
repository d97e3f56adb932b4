"""rdcl synth estimates the memory a phantom needs and refuses shapes that would not fit, naming
the need, before anything is written (issue 11, item 14)."""

from __future__ import annotations

import numpy as np
import pytest

from rdcl.cli import main
from rdcl.data.synth import generate as synth_generate
from rdcl.data.synth import memory, synthesize_dataset, synthesize_phantom
from rdcl.data.synth.memory import (
    BYTES_PER_VOXEL,
    SynthMemoryError,
    available_bytes,
    check_memory,
    estimate_bytes,
)


def test_estimate_covers_the_measured_peak():
    import tracemalloc

    shape = (8, 64, 64)
    tracemalloc.start()
    try:
        synthesize_phantom("covid", shape, (5.0, 3.2, 3.2), np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate_bytes(shape)
    assert estimate_bytes(shape) == BYTES_PER_VOXEL * 8 * 64 * 64


def test_available_memory_is_known_here():
    have = available_bytes()
    assert have is None or have > 0


def test_check_memory_names_the_need():
    with pytest.raises(SynthMemoryError, match=r"needs about 4\.3 TB .* found 1\.0 GB available"):
        check_memory((3000, 3000, 3000), available=10**9)
    check_memory((32, 96, 96), available=10**9)  # 0.15 GB fits


def test_cli_refuses_a_huge_shape_in_one_line(tmp_path, capsys):
    out = tmp_path / "big"
    argv = ["synth", "--out", str(out), "--kind", "covid", "--cases", "1"]
    code = main([*argv, "--shape", "3000,3000,3000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "3000x3000x3000" in err[0] and "TB of memory" in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_library_refuses_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)
    with pytest.raises(SynthMemoryError, match="needs about"):
        synthesize_dataset(tmp_path / "d", kind="covid", n_cases=1, dim=2, shape=(128, 128))
    with pytest.raises(SynthMemoryError):
        synthesize_phantom("covid", (128, 128), (3.2, 3.2), np.random.default_rng(0))
    assert list(tmp_path.iterdir()) == []


def test_memory_error_while_drawing_becomes_one_line(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(synth_generate, "synthesize_phantom", boom)
    with pytest.raises(SynthMemoryError, match=r"ran out of memory .* 64x64"):
        synthesize_dataset(tmp_path / "d", kind="covid", n_cases=1, dim=2, shape=(64, 64))
    assert list(tmp_path.iterdir()) == []  # the staging folder is removed


def test_negative_seed_is_named(tmp_path, capsys):
    argv = [
        "synth",
        "--out",
        str(tmp_path / "s"),
        "--kind",
        "covid",
        "--cases",
        "1",
        "--seed",
        "-1",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed must be an integer >= 0, found -1" in err[0]
    assert list(tmp_path.iterdir()) == []
