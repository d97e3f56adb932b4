"""One line on bad input, always (issue 18, item 5): argument values that reached the library
(``download --timeout -1`` was a socket ValueError traceback) and loaders whose libraries print
warnings before rdcl's line (torch's "outdated pt2" for a random-bytes ``.pt2``)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from rdcl.cli import main
from rdcl.data.io import Geometry, write_image


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "abc"])
def test_download_timeout_must_be_positive_seconds(tmp_path, capsys, value):
    out = tmp_path / "dl"
    assert main(["download", "covid19-ct-seg", "--out", str(out), "--timeout", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--timeout" in err[0] and "> 0" in err[0], err
    assert not out.exists()


def test_download_file_refuses_a_bad_timeout_from_python(tmp_path):
    from rdcl.data.datasets.download import download_file
    from rdcl.errors import RdclInputError

    with pytest.raises(RdclInputError, match="timeout must be"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x", digest=("sha256", "0"), timeout=-1)
    assert list(tmp_path.iterdir()) == []


def test_random_bytes_pt2_is_one_line_without_torch_log(tmp_path, capfd):
    img = tmp_path / "x.nii.gz"
    write_image(np.zeros((16, 16), np.int16), Geometry.default(2, (1.0, 1.0)), img)
    model = tmp_path / "model.pt2"
    model.write_bytes(os.urandom(4096))
    torch_log = logging.getLogger("torch._inductor.package.package")
    level = torch_log.level
    code = main(["predict", "-i", str(img), "-o", str(tmp_path / "m.nii.gz"), "-m", str(model)])
    assert code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rdcl predict: error:"), err
    assert "outdated" not in err[0]
    assert torch_log.level == level  # the loader's logger is restored


def test_warnings_before_a_user_error_fold_into_its_line(tmp_path, capsys):
    """``rdcl prepare`` printed its 'skipping' warnings, then 'no cases found': two lines and
    more. The warnings held back by the CLI are named in the one error line instead."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    geom = Geometry.default(2, (1.0, 1.0))
    write_image(np.zeros((8, 8), np.int16), geom, src / "images" / "a.nii.gz")
    write_image(np.zeros((8, 8), np.uint8), geom, src / "masks" / "b.nii.gz")
    assert main(["prepare", "slices", "--src", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("rdcl prepare: error:") and "after the warning: skipping" in err[0]
    assert "1 more with -v" in err[0]
    assert not (tmp_path / "out").exists()


def test_held_warnings_are_shown_on_success_and_after_the_hold_time(monkeypatch, capsys):
    import time

    import rdcl.cli as cli

    def warn_then(args) -> int:
        logging.getLogger("rdcl.data.x").warning("first")
        if str(args.out) == "slow":
            time.sleep(0.3)
            assert "first" in capsys.readouterr().err  # shown while the command still runs
        logging.getLogger("rdcl.data.x").warning("second")
        return 0

    monkeypatch.setattr(cli, "HOLD_SECONDS", 0.1)
    parser = cli.build_parser
    monkeypatch.setattr(
        cli,
        "build_parser",
        lambda: _with_handler(parser(), warn_then),
    )
    assert cli.main(["demo", "--out", "fast"]) == 0
    err = capsys.readouterr().err
    assert "first" in err and "second" in err and err.index("first") < err.index("second")
    assert cli.main(["demo", "--out", "slow"]) == 0
    assert "second" in capsys.readouterr().err


def _with_handler(parser, handler):
    for action in parser._subparsers._group_actions:
        action.choices["demo"].set_defaults(handler=handler)
    return parser
