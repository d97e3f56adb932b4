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
    from rdcl.data.download import download_file
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
