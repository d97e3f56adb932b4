"""A path that exists but cannot be read is reported as "permission denied", never as "not
found" (issue 11, item 16). The suite runs as root in CI, where permissions are not enforced, so
the denial is simulated at the system calls rdcl makes (``os.access`` and ``stat``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdcl import paths
from rdcl.cli import main
from rdcl.paths import require_dir, require_file, require_path


@pytest.fixture
def deny(monkeypatch):
    """``deny(path)``: this process may no longer read ``path`` (``os.access`` says no)."""
    denied: set[str] = set()
    real = os.access

    def access(p, mode, *a, **k):
        if os.path.abspath(p) in denied:
            return False
        return real(p, mode, *a, **k)

    monkeypatch.setattr(paths.os, "access", access)
    return lambda p: denied.add(os.path.abspath(p))


@pytest.fixture
def unsearchable(monkeypatch):
    """``unsearchable(folder)``: stat of anything below ``folder`` raises EACCES."""
    blocked: list[str] = []
    real = Path.stat

    def stat(self, *a, **k):
        if any(str(self).startswith(b + os.sep) for b in blocked):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "stat", stat)
    return lambda p: blocked.append(str(p))


def test_missing_unreadable_and_wrong_kind(tmp_path, deny, unsearchable):
    f, d = tmp_path / "f.ckpt", tmp_path / "d"
    f.write_bytes(b"x")
    d.mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        require_file(tmp_path / "none", "checkpoint")
    deny(f)
    with pytest.raises(PermissionError, match="permission denied: cannot read checkpoint"):
        require_file(f, "checkpoint")
    deny(d)
    with pytest.raises(PermissionError, match="permission denied: cannot read data folder"):
        require_dir(d, "data folder")
    with pytest.raises(IsADirectoryError):
        require_file(tmp_path, "checkpoint")
    with pytest.raises(NotADirectoryError):
        require_dir(f, "data folder")
    unsearchable(tmp_path / "locked")
    with pytest.raises(PermissionError, match="not searchable"):
        require_path(tmp_path / "locked" / "x", "image")


def test_load_checkpoint_reports_permission(tmp_path, deny):
    from rdcl.formats.checkpoint import load_checkpoint

    f = tmp_path / "final.ckpt"
    f.write_bytes(b"x")
    deny(f)
    with pytest.raises(PermissionError, match="permission denied"):
        load_checkpoint(f)


def _one_line(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "not found" not in err[0], err


def test_cli_says_permission_denied(tmp_path, capsys, deny):
    ckpt, image, data = tmp_path / "m.ckpt", tmp_path / "x.nii.gz", tmp_path / "data"
    ckpt.write_bytes(b"x")
    image.write_bytes(b"x")
    data.mkdir()
    deny(ckpt)
    out = str(tmp_path / "o.nii.gz")
    _one_line(capsys, ["predict", "-i", str(image), "-o", out, "-m", str(ckpt)],
              f"permission denied: cannot read model {ckpt}")  # fmt: skip
    deny(image)
    _one_line(capsys, ["predict", "-i", str(image), "-o", out, "-m", str(ckpt)],
              f"permission denied: cannot read input {image}")  # fmt: skip
    deny(data)
    _one_line(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run")],
              f"permission denied: cannot read --data folder {data}")  # fmt: skip
    _one_line(capsys, ["evaluate", "--pred", str(image), "--gt", str(image)],
              "permission denied: cannot read --pred")  # fmt: skip
    assert not (tmp_path / "run").exists()
