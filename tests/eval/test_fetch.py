"""Fetching one file out of a published archive: checked, atomic, the archive removed."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval.datasets import DatasetError
from eval.fetch import fetch_member

MEMBER = "pkg-1.0/tasks/nyt.json"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An archive holding :data:`MEMBER`, served over HTTP: its URL and SHA-256."""
    root = tmp_path / "site"
    root.mkdir()
    payload = b'{"data": []}'
    with tarfile.open(root / "pkg-1.0.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(MEMBER)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    digest = hashlib.sha256((root / "pkg-1.0.tar.gz").read_bytes()).hexdigest()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/pkg-1.0.tar.gz", digest
    finally:
        server.shutdown()
        server.server_close()


def test_the_member_is_kept_and_the_archive_deleted(
    served: tuple[str, str], tmp_path: Path
) -> None:
    url, digest = served
    target = tmp_path / "cache" / "nyt.json"
    fetch_member(url, digest, MEMBER, target)
    assert target.read_bytes() == b'{"data": []}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["nyt.json"]


def test_an_archive_with_another_digest_is_refused(served: tuple[str, str], tmp_path: Path) -> None:
    url, _ = served
    target = tmp_path / "cache" / "nyt.json"
    with pytest.raises(DatasetError, match=r"SHA-256 .* is not the expected"):
        fetch_member(url, "0" * 64, MEMBER, target)
    assert list(target.parent.iterdir()) == []


def test_a_missing_member_or_archive_is_named(served: tuple[str, str], tmp_path: Path) -> None:
    url, digest = served
    target = tmp_path / "cache" / "nyt.json"
    with pytest.raises(DatasetError, match=r"holds no file pkg-1\.0/other\.json"):
        fetch_member(url, digest, "pkg-1.0/other.json", target)
    with pytest.raises(DatasetError, match=r"could not download .*missing\.tar\.gz"):
        fetch_member(url.replace("pkg-1.0", "missing"), digest, MEMBER, target)
    assert list(target.parent.iterdir()) == []
