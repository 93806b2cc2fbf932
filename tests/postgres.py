"""A throwaway PostgreSQL server for tests: the real server, started in a temporary directory.

It listens only on 127.0.0.1 on a free port (its unix socket stays in the
temporary directory), trusts local connections, runs without fsync, and is
stopped and deleted afterwards. PostgreSQL refuses to run as root, so under
root the server runs as the `postgres` system user the Debian package creates.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from ivr.localhost import free_port

NOT_INSTALLED = "PostgreSQL server binaries not installed (apt-get install postgresql)"
SUPERUSER = "postgres"
PG_ROOT = Path("/usr/lib/postgresql")


def _version(bin_dir: Path) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", bin_dir.parent.name)]


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl (where Debian installs them)."""
    found = [d for d in PG_ROOT.glob("*/bin") if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return max(found, key=_version, default=None)


def bin_dir_or_skip() -> Path:
    """The server binaries; without them tests skip, but fail on CI (`CI` set), which installs them."""
    found = find_bin_dir()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    return found


@dataclass
class PostgresServer:
    """A running server; `create_database` hands out fresh, empty databases."""

    port: int
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"test_{next(self._names)}"
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT", future=True)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        finally:
            engine.dispose()
        return self.url(name)


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Run initdb and start a server in a new temporary directory; stop it and delete the directory on exit."""
    work = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(work, user="postgres", group="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = work / "data", work / "server.log"

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server_log}")

    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={work} -c fsync=off"
    try:
        initdb = ("-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
        run(str(bin_dir / "initdb"), "-D", str(data), *initdb)
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield PostgresServer(port)
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(work, ignore_errors=True)
