"""rdcl.fsutil: atomic file writes and staged output folders (the one home of both)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rdcl import fsutil
from rdcl.fsutil import (
    atomic_write,
    atomic_write_path,
    check_out_dir,
    remove_stale_temps,
    staged_dir,
    write_bytes_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def fsyncs(monkeypatch):
    """The file descriptors passed to os.fsync, in order (the calls still happen)."""
    calls: list[int] = []
    real = os.fsync

    def record(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(fsutil.os, "fsync", record)
    return calls


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_gives_the_content_a_plain_files_mode_and_fsyncs(tmp_path, umask_022, fsyncs):
    out = tmp_path / "sub" / "a.bin"  # the folder is created
    assert atomic_write(out, lambda fh: fh.write(b"abc")) == out
    assert out.read_bytes() == b"abc"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert len(fsyncs) == 2  # the file, then its folder
    assert _hidden(out.parent) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    out = write_text_atomic(tmp_path / "a.txt", "old")

    def half(fh):
        fh.write(b"new, half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(out, half)
    assert out.read_text() == "old"
    assert _hidden(tmp_path) == []


def test_text_and_bytes_keep_the_bytes_as_given(tmp_path):
    assert write_text_atomic(tmp_path / "t.csv", "a,b\r\nü\n").read_bytes() == "a,b\r\nü\n".encode()
    assert write_bytes_atomic(tmp_path / "b", b"\x00\xff").read_bytes() == b"\x00\xff"


def test_atomic_write_path_gives_the_writer_a_name_with_the_format_suffix(tmp_path, fsyncs):
    seen = []

    def writer(tmp: Path):
        seen.append(tmp)
        tmp.write_text("{}")

    out = atomic_write_path(tmp_path / "m.nii.gz", writer, suffix=".nii.gz")
    assert seen[0].name.endswith(".tmp.nii.gz") and seen[0].parent == tmp_path
    assert out.read_text() == "{}" and len(fsyncs) == 2
    with pytest.raises(ValueError, match="bad"):
        atomic_write_path(
            out, lambda tmp: (tmp.write_text("x"), (_ for _ in ()).throw(ValueError("bad")))
        )
    assert out.read_text() == "{}" and _hidden(tmp_path) == []


def test_remove_stale_temps_by_destination_name(tmp_path):
    ckpt = [tmp_path / ".last.ckpt.k1ll3d.tmp", tmp_path / ".final.ckpt.x.tmp"]
    other = [tmp_path / ".config.json.abc.tmp", tmp_path / "a.tmp", tmp_path / "last.ckpt"]
    for p in ckpt + other:
        p.write_bytes(b"")
    assert remove_stale_temps(tmp_path, "*.ckpt") == sorted(ckpt)
    assert all(p.exists() for p in other)
    assert remove_stale_temps(tmp_path) == [tmp_path / ".config.json.abc.tmp"]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_check_out_dir(tmp_path):
    check_out_dir(tmp_path / "new", overwrite=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", overwrite=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="cache folder exists and is not empty"):
        check_out_dir(tmp_path / "full", overwrite=False, what="cache folder")
    check_out_dir(tmp_path / "full", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        check_out_dir(tmp_path / "file", overwrite=True)


def test_staged_dir_replaces_the_folder_only_on_success(tmp_path, umask_022):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyError):
        with staged_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyError("half way")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert _hidden(tmp_path) == []
    with staged_dir(out, overwrite=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.")
        (tmp / "new.txt").write_text(json.dumps(1))
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert _hidden(tmp_path) == []


def test_staged_dir_refuses_a_full_folder_without_overwrite_before_and_after(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        with staged_dir(out, overwrite=False):
            pytest.fail("the block must not run")
    empty = tmp_path / "late"
    with pytest.raises(FileExistsError, match="not empty"):
        with staged_dir(empty, overwrite=False) as tmp:
            (tmp / "a").write_text("a")
            empty.mkdir()  # someone else wrote the folder meanwhile
            (empty / "theirs").write_text("t")
    assert sorted(p.name for p in empty.iterdir()) == ["theirs"]
    assert _hidden(tmp_path) == []


def test_write_config_is_atomic_and_fsynced(tmp_path, fsyncs):
    # It was the one atomic write without fsync (issue 12).
    from rdcl.config import preset
    from rdcl.training.loop import write_config

    write_config(preset("tiny3d"), tmp_path, {"world_size": 1})
    assert json.loads((tmp_path / "config.json").read_text())["run"] == {"world_size": 1}
    assert len(fsyncs) == 2 and _hidden(tmp_path) == []
