"""rdcl download against a local HTTP server on 127.0.0.1 only: resume, checksums, bad input."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rdcl.cli import main
from rdcl.data.datasets.download import (
    SOURCES,
    DownloadError,
    RemoteFile,
    download_file,
    expected_digest,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with Range support; ``server.cut`` names files whose
    first full (non-range) response is cut after half the bytes (an interrupted download)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/").split("?")[0]
        srv.requests.append((name, self.headers.get("Range")))
        data = srv.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in srv.cut and not rng:
            srv.cut.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cut, srv.ranges = {}, [], set(), True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv, name: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{name}"


def _sha(data: bytes) -> tuple[str, str]:
    return "sha256", hashlib.sha256(data).hexdigest()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    data = np.random.default_rng(0).bytes(3 << 20)
    server.files["a.zip"] = data
    server.cut.add("a.zip")
    dest = tmp_path / "a.zip"
    with pytest.raises(DownloadError, match="resume"):
        download_file(_url(server, "a.zip"), dest, digest=_sha(data))
    part = tmp_path / "a.zip.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(data)
    have = part.stat().st_size
    download_file(_url(server, "a.zip"), dest, digest=_sha(data))
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("a.zip", f"bytes={have}-")  # only the rest was fetched
    # a verified file is kept without another request
    n = len(server.requests)
    download_file(_url(server, "a.zip"), dest, digest=_sha(data))
    assert len(server.requests) == n


def test_server_without_range_support_restarts(server, tmp_path):
    data = b"x" * 5000
    server.files["b.tar"], server.ranges = data, False
    (tmp_path / "b.tar.part").write_bytes(b"garbage")
    download_file(_url(server, "b.tar"), tmp_path / "b.tar", digest=_sha(data))
    assert (tmp_path / "b.tar").read_bytes() == data


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    server.files["c.zip"] = b"tampered"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(_url(server, "c.zip"), tmp_path / "c.zip", digest=_sha(b"original"))
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(_url(server, "missing.zip"), tmp_path / "m.zip", digest=_sha(b""))


def test_unknown_checksum_is_refused_unless_given():
    remote = RemoteFile("http://127.0.0.1/x.zip", "x.zip")
    with pytest.raises(DownloadError, match=r"--sha256 x\.zip=HEX"):
        expected_digest(remote)
    assert expected_digest(remote, "AB" * 32) == ("sha256", "ab" * 32)
    with pytest.raises(DownloadError, match="64 hex digits"):
        expected_digest(remote, "1234")


def test_source_table_is_complete():
    for source in SOURCES.values():
        for f in source.files:
            assert f.url.startswith("https://") and f.url.split("/")[-1].startswith(f.filename)
            assert (len(f.sha256) == 64 or len(f.md5) == 32) and f.checksum_source
        assert source.files or source.note


def _covid_archives(tmp_path: Path) -> dict[str, bytes]:
    from rdcl.data.io import Geometry, write_image

    src = tmp_path / "src"
    geom = Geometry((5.0, 0.7, 0.7), (1.0, 2.0, 3.0), tuple(np.eye(3).ravel()))
    img = np.full((4, 8, 8), -1000, np.int16)
    lab = np.zeros((4, 8, 8), np.uint8)
    lab[1:3, 2:5, 2:5] = 1
    write_image(img, geom, src / "img" / "coronacases_org_001.nii.gz")
    write_image(lab, geom, src / "msk" / "coronacases_001.nii.gz")
    out = {}
    for zname, folder in (("COVID-19-CT-Seg_20cases.zip", "img"), ("Infection_Mask.zip", "msk")):
        zpath = tmp_path / zname
        with zipfile.ZipFile(zpath, "w") as zf:
            for p in (src / folder).iterdir():
                zf.write(p, p.name)
        out[zname] = zpath.read_bytes()
    return out


def test_rdcl_download_end_to_end_from_a_mirror(server, tmp_path, capsys):
    archives = _covid_archives(tmp_path)
    server.files.update(archives)
    sums = [f"--sha256={n}={hashlib.sha256(b).hexdigest()}" for n, b in archives.items()]
    out = tmp_path / "dl"
    mirror = _url(server, "").rstrip("/")
    argv = ["download", "covid19-ct-seg", "-q", "--out", str(out), "--mirror", mirror, *sums]
    assert main(argv) == 0
    prepared = out / "prepared"
    assert (prepared / "imagesTr" / "coronacases_001_0000.nii.gz").is_file()
    assert (prepared / "labelsTr" / "coronacases_001.nii.gz").is_file()
    # the built-in (third-party) checksums do not match the fake archives: refused, one line
    capsys.readouterr()
    again = ["download", "covid19-ct-seg", "--out", str(tmp_path / "dl2"), "--mirror", mirror]
    assert main(again) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0]
    assert not (tmp_path / "dl2" / "prepared").exists()


def test_rdcl_download_refuses_what_it_cannot_fetch(tmp_path, capsys):
    assert main(["download", "nsclc-effusion", "--out", str(tmp_path / "x")]) == 2
    assert "NBIA Data Retriever" in capsys.readouterr().err
    assert main(["download", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown data set" in capsys.readouterr().err
    argv = [
        "download",
        "msd-lung",
        "--out",
        str(tmp_path / "x"),
        "--sha256",
        "other.tar=" + "0" * 64,
    ]
    assert main(argv) == 2
    assert "Task06_Lung.tar" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_lists_every_known_data_set():
    from rdcl.cli.download import DATA_SETS
    from rdcl.data.datasets.prepare import PREPARERS

    assert set(DATA_SETS) == set(SOURCES) == set(PREPARERS)
