"""Resumable, checksum-verified downloads of the paper's public archives: :func:`download_dataset`
(what ``rdcl download`` runs: fetch, verify, unpack, prepare) and :func:`download_file`.

Nothing here runs at import time; only :func:`download_file` opens a connection, to the URL it
is given. A download goes to ``<name>.part`` beside the target and resumes from its size with an
HTTP ``Range`` request (a server that ignores the range and answers 200 restarts it from zero);
the finished file is checked against its SHA-256 (or, where only that is published, MD5) and only
then renamed to its final name. A checksum mismatch deletes the partial file and raises.

The checksums in :data:`SOURCES` were NOT computed by rdcl (the archives cannot be fetched where
rdcl is developed): they are the values that other public projects publish for the same URLs,
named in ``checksum_source``. Pass ``--sha256 FILE=HEX`` to use your own; files without a known
sum are refused unless one is given.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rdcl.data.datasets.prepare import extract_archive, prepare
from rdcl.errors import RdclInputError
from rdcl.fsutil import move_into_place

if TYPE_CHECKING:
    from rdcl.data.datasets.spec import DatasetSpec

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
"""Bytes read per network read and per hash update."""

PREPARED = "prepared"
"""Sub-folder of :func:`download_dataset`'s ``out`` that receives the native-layout data set
(beside ``archives/``, kept, and ``raw/``, unpacked)."""

MIRROR_SCHEMES = ("http", "https", "ftp", "file")
"""URL schemes a ``mirror`` may use."""


class DownloadError(RdclInputError):
    """A download failed or its checksum did not match (one-line message)."""


@dataclass(frozen=True)
class RemoteFile:
    """One archive: its URL, file name, and known digests (hex, lower case; "" when unknown)."""

    url: str
    filename: str
    sha256: str = ""
    md5: str = ""
    checksum_source: str = ""


@dataclass(frozen=True)
class Source:
    """A downloadable data set: its archives and the ``rdcl prepare`` layout they unpack to."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    layout: str
    note: str = ""


_ZENODO = "https://zenodo.org/records/3757476/files/"
_TORCH_EM = "torch-em (constantinpape/torch-em, torch_em/data/datasets/medical/{})"

SOURCES: dict[str, Source] = {
    "covid19-ct-seg": Source(
        "covid19-ct-seg",
        "COVID-19-CT-Seg (Ma et al., Zenodo record 3757476): 20 CT volumes with infection masks",
        (
            RemoteFile(
                _ZENODO + "COVID-19-CT-Seg_20cases.zip",
                "COVID-19-CT-Seg_20cases.zip",
                sha256="a5060480eff9315b069b086312dac4872777901fb80d268a5a83edd9f4e7b440",
                checksum_source=_TORCH_EM.format("covid19_seg.py"),
            ),
            RemoteFile(
                _ZENODO + "Infection_Mask.zip",
                "Infection_Mask.zip",
                sha256="87901c73fdd2230260e61d2dbc57bf56026efc28264006b8ea2bf411453c1694",
                checksum_source=_TORCH_EM.format("covid19_seg.py"),
            ),
        ),
        layout="covid19-ct-seg",
    ),
    "msd-lung": Source(
        "msd-lung",
        "Medical Segmentation Decathlon Task06_Lung (MONAI's mirror of the MSD archive)",
        (
            RemoteFile(
                "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task06_Lung.tar",
                "Task06_Lung.tar",
                sha256="f782cd09da9cf7a3128475d4a53650d371db10f0427aa76e166fccfcb2654161",
                md5="8afd997733c7fc0432f71255ba4e52dc",
                checksum_source="SHA-256: "
                + _TORCH_EM.format("msd.py")
                + "; MD5: MONAI monai/apps/datasets.py",
            ),
        ),
        layout="msd-lung",
    ),
    "nsclc-effusion": Source(
        "nsclc-effusion",
        "NSCLC pleural effusion masks (PleThora, TCIA) on NSCLC-Radiomics CT",
        (),
        layout="nsclc-effusion",
        note=(
            "the CT scans are distributed by TCIA through the NBIA Data Retriever, not over plain "
            "HTTP; download NSCLC-Radiomics and the PleThora effusion masks there, then run "
            "'rdcl prepare nsclc-effusion --src DIR --out DIR'"
        ),
    ),
}
"""The known data sets (``rdcl download NAME``)."""


def get_source(name: str) -> Source:
    """The :class:`Source` called ``name``; ValueError naming the known ones otherwise."""
    if name not in SOURCES:
        raise RdclInputError(f"unknown data set {name!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[name]


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``sha256`` or ``md5``), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def expected_digest(remote: RemoteFile, override: str | None = None) -> tuple[str, str]:
    """``(algorithm, hex)`` to verify ``remote`` with: ``override`` (a SHA-256) first, then the
    known SHA-256, then the known MD5. Raises :class:`DownloadError` when there is none."""
    if override:
        hexsum = override.strip().lower()
        if len(hexsum) != 64 or any(c not in "0123456789abcdef" for c in hexsum):
            raise DownloadError(
                f"--sha256 for {remote.filename}: expected 64 hex digits, found {override!r}"
            )
        return "sha256", hexsum
    if remote.sha256:
        return "sha256", remote.sha256
    if remote.md5:
        return "md5", remote.md5
    raise DownloadError(
        f"no known checksum for {remote.filename}; refusing to use an unverified download "
        f"(pass --sha256 {remote.filename}=HEX with the publisher's SHA-256)"
    )


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "rdcl"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def download_file(
    url: str,
    dest: str | Path,
    *,
    digest: tuple[str, str],
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present, and verify it.

    Args:
        url: http(s) URL.
        dest: the final file path; an existing file with the right digest is kept as is.
        digest: ``(algorithm, hex)`` from :func:`expected_digest`.
        timeout: seconds per network operation.
        progress: called with (bytes so far, total bytes or None) after each chunk.

    Returns:
        ``dest``.

    Raises:
        DownloadError: HTTP/network error (the partial file is kept for the next call to
            resume), or a checksum mismatch (the partial file is deleted).
    """
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise RdclInputError(f"timeout must be a number of seconds > 0, found {timeout!r}")
    dest = Path(dest)
    algorithm, expected = digest
    if dest.is_file():
        if file_digest(dest, algorithm) == expected:
            logger.info("%s already downloaded and verified", dest)
            return dest
        raise DownloadError(
            f"{dest} exists but its {algorithm} is not the expected {expected}; remove it first"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    total: int | None = None
    try:
        with _open(url, start, timeout) as response:
            status = getattr(response, "status", 200)
            if start and status != 206:
                logger.info("server ignored the range request; downloading %s again", url)
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            done = start
            with open(part, "ab" if start else "wb") as fh:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the part file is already complete
            pass
        else:
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"download of {url} interrupted ({reason}); run the same command again to resume "
            f"from {part.stat().st_size if part.is_file() else 0} bytes"
        ) from exc
    if total is not None and part.stat().st_size < total:
        raise DownloadError(
            f"download of {url} interrupted at {part.stat().st_size} of {total} bytes; run the "
            "same command again to resume"
        )
    found = file_digest(part, algorithm)
    if found != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {dest.name}: expected {algorithm} {expected}, found {found}; "
            "the download was deleted"
        )
    return move_into_place(part, dest)  # fsync, rename, fsync the folder


def check_mirror(url: str) -> str:
    """``url`` if it is a mirror Python can fetch from (http, https, ftp with a host; file),
    else :class:`DownloadError` (one line)."""
    parts = urlsplit(url)
    if parts.scheme not in MIRROR_SCHEMES or (parts.scheme != "file" and not parts.netloc):
        raise DownloadError(
            f"expected a URL such as https://host/path (schemes {', '.join(MIRROR_SCHEMES)}), "
            f"found {url!r}"
        )
    return url


def download_dataset(
    name: str,
    out: str | Path,
    *,
    sha256: Mapping[str, str] | None = None,
    mirror: str | None = None,
    timeout: float = 60.0,
    overwrite: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
    verified: Callable[[Path, tuple[str, str]], None] | None = None,
) -> DatasetSpec:
    """Download the archives of data set ``name`` (a key of :data:`SOURCES`) into
    ``out/archives`` (resuming interrupted downloads), verify each, unpack them into ``out/raw``
    and convert them into rdcl's native layout in ``out/prepared`` (:data:`PREPARED`).

    Args:
        sha256: archive file name -> expected SHA-256, overriding the built-in table.
        mirror: fetch ``<mirror>/<file name>`` instead of the publisher's address.
        timeout: seconds per network operation.
        overwrite: replace an existing, non-empty prepared data set.
        progress: called with (file name, bytes so far, total or None) while downloading.
        verified: called with (archive path, (algorithm, hex digest)) once an archive is
            verified.

    Returns:
        The prepared data set.

    Raises:
        RdclInputError: an unknown or not downloadable data set, a ``sha256`` entry naming no
            archive of it; :class:`DownloadError`: no known checksum, a bad ``mirror``, a failed
            download or a checksum mismatch (all before ``out/prepared`` is written);
        FileExistsError: ``out`` is a file, or the prepared data set exists and not
            ``overwrite``.
    """
    source = get_source(name)
    if not source.files:
        raise RdclInputError(f"{source.name} cannot be downloaded by rdcl: {source.note}")
    overrides = dict(sha256 or {})
    unknown = sorted(set(overrides) - {f.filename for f in source.files})
    if unknown:
        raise RdclInputError(
            f"--sha256 names {unknown[0]!r}; expected one of {[f.filename for f in source.files]}"
        )
    if mirror is not None:
        check_mirror(mirror)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out must be a folder, found a file: {out}")
    digests = [expected_digest(f, overrides.get(f.filename)) for f in source.files]
    prepared = out / PREPARED
    if prepared.is_dir() and any(prepared.iterdir()) and not overwrite:
        raise FileExistsError(f"prepared data set exists (pass --overwrite): {prepared}")
    raw = out / "raw"
    for remote, digest in zip(source.files, digests, strict=True):
        url = f"{mirror.rstrip('/')}/{remote.filename}" if mirror else remote.url
        archive = download_file(
            url,
            out / "archives" / remote.filename,
            digest=digest,
            timeout=timeout,
            progress=None if progress is None else functools.partial(progress, remote.filename),
        )
        if verified is not None:
            verified(archive, digest)
        stem = remote.filename.split(".")[0]
        done = raw / f".{stem}.complete"
        if not done.is_file():
            extract_archive(archive, raw / stem)
            done.write_text("")
    return prepare(source.layout, raw, prepared, overwrite=overwrite)
