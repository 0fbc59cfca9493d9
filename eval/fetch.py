"""The SQuADShifts New York Times split, fetched once from PyPI (evaluation data only).

It ships inside the ``bigbench==1.0.0`` source package (``benchmark_tasks/squad_shifts/``,
CC BY 4.0, Miller et al. 2020), the package the other SQuADShifts files in ``../shared``
came from. That archive is 358 MB and the package itself cannot be installed (it
declares a direct URL dependency), so the archive is downloaded from PyPI's file host,
checked against its published SHA-256 and the one file is kept; the archive is deleted.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import httpx
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

from eval.datasets import DatasetError

BIGBENCH_SDIST = (
    "https://files.pythonhosted.org/packages/95/f8/"
    "c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/bigbench-1.0.0.tar.gz"
)
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
NYT_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/nyt_v1.0.json"
NYT_FILE = "nyt_v1.0.json"


def nyt_questions(directory: Path) -> Path:
    """The NYT split's SQuAD-layout file in ``directory``, fetched there on first use."""
    target = directory / NYT_FILE
    if not target.is_file():
        fetch_member(BIGBENCH_SDIST, BIGBENCH_SHA256, NYT_MEMBER, target)
    return target


def fetch_member(url: str, sha256: str, member: str, target: Path) -> None:
    """Download the ``.tar.gz`` at ``url``, check its SHA-256, and write its ``member`` to
    ``target`` (atomically); the archive is deleted either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.with_name(target.name + ".tar.gz.partial")
    try:
        _download(url, archive, sha256)
        _extract(archive, member, target)
    finally:
        archive.unlink(missing_ok=True)


def _download(url: str, path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    try:
        with (
            httpx.stream("GET", url, follow_redirects=True, timeout=60) as response,
            Progress(
                *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()
            ) as progress,
        ):
            response.raise_for_status()
            size = int(response.headers.get("content-length", 0)) or None
            task = progress.add_task(f"fetching {url.rsplit('/', 1)[-1]}", total=size)
            with path.open("wb") as file:
                for block in response.iter_bytes(1 << 20):
                    file.write(block)
                    digest.update(block)
                    progress.advance(task, len(block))
    except httpx.HTTPError as error:
        raise DatasetError(f"could not download {url}: {error}") from None
    if digest.hexdigest() != sha256:
        raise DatasetError(f"{url}: SHA-256 {digest.hexdigest()} is not the expected {sha256}")


def _extract(archive: Path, member: str, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(archive, "r:gz") as tar:
        try:
            source = tar.extractfile(member)
        except KeyError:
            source = None
        if source is None:
            raise DatasetError(f"{archive.name} holds no file {member}")
        partial.write_bytes(source.read())
    os.replace(partial, target)
