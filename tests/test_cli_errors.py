"""The CLI's error contract (rdcl.errors): typed input errors and OSError are one line with exit
status 2; any other exception, a plain ValueError from inside the library included, is a bug
and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import rdcl.data.synth
from rdcl import errors
from rdcl.cli import USER_ERRORS, main

TYPED = [
    errors.RdclInputError,
    errors.ConfigError,
    errors.DatasetError,
    errors.ImageReadError,
    errors.ImageWriteError,
    errors.CheckpointError,
    errors.TrainingDivergedError,
]


def test_every_typed_error_is_an_input_error_and_a_value_error():
    for cls in TYPED:
        assert issubclass(cls, errors.RdclInputError) and issubclass(cls, ValueError), cls
    assert USER_ERRORS == (errors.RdclInputError, OSError)
    assert not issubclass(ValueError, USER_ERRORS)  # a plain ValueError is not a user error


def test_the_old_homes_name_the_same_classes():
    from rdcl.config import ConfigError
    from rdcl.data.datasets.spec import DatasetError
    from rdcl.data.io import ImageReadError
    from rdcl.errors import CheckpointError, TrainingDivergedError

    assert (ConfigError, DatasetError, ImageReadError, CheckpointError, TrainingDivergedError) == (
        errors.ConfigError,
        errors.DatasetError,
        errors.ImageReadError,
        errors.CheckpointError,
        errors.TrainingDivergedError,
    )


def _synth_raising(monkeypatch, exc: BaseException) -> None:
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(rdcl.data.synth, "synthesize_dataset", boom)


@pytest.mark.parametrize("cls", TYPED)
def test_a_typed_error_from_a_command_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, cls):
    _synth_raising(monkeypatch, cls("expected a thing,\n  found another"))
    code = main(["synth", "--out", str(tmp_path / "ds"), "--cases", "1", "--kind", "covid"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.splitlines() == ["rdcl synth: error: expected a thing, found another"], err


def test_an_internal_value_error_is_a_bug_with_its_traceback(tmp_path, monkeypatch, capsys):
    _synth_raising(monkeypatch, ValueError("operands could not be broadcast (3,) (4,)"))
    with pytest.raises(ValueError, match="broadcast"):
        main(["synth", "--out", str(tmp_path / "ds"), "--cases", "1", "--kind", "covid"])
    assert "error:" not in capsys.readouterr().err  # not dressed up as a user error


def test_an_internal_value_error_exits_1_with_a_traceback_in_a_real_process(tmp_path):
    # The console script: Python prints the traceback and exits 1 (never 2).
    script = textwrap.dedent(
        f"""
        import sys
        import rdcl.data.synth
        from rdcl.cli import main

        def boom(*args, **kwargs):
            raise ValueError("internal shape bug")

        rdcl.data.synth.synthesize_dataset = boom
        argv = ["synth", "--out", {str(tmp_path / "ds")!r}, "--cases", "1", "--kind", "covid"]
        sys.exit(main(argv))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback (most recent call last)" in res.stderr
    assert "ValueError: internal shape bug" in res.stderr
    assert "rdcl synth: error:" not in res.stderr


def test_a_bad_cli_value_is_typed(tmp_path, capsys):
    # --cases 0 is checked by the CLI itself (RdclInputError), not by argparse.
    assert main(["synth", "--out", str(tmp_path / "ds"), "--cases", "0", "--kind", "covid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rdcl synth: error: --cases must be >= 1, found 0"], err
    assert not (tmp_path / "ds").exists()
