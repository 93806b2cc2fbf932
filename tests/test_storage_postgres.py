"""The storage tests of tests/test_storage.py, run on a real PostgreSQL server.

The server (tests/postgres.py) is started once for this module; every test
gets a new empty database on it through the `db_url` fixture, which replaces
the SQLite one.
"""

from __future__ import annotations

import pytest

from tests.postgres import PostgresServer, bin_dir_or_skip, postgres_server
from tests.test_storage import *  # noqa: F401,F403  (the shared tests and fixtures)
from tests.test_storage import (
    test_sqlite_processes_starting_while_another_one_writes_all_succeed,
    test_sqlite_runs_in_wal_mode_with_a_busy_timeout,
)

del (
    test_sqlite_processes_starting_while_another_one_writes_all_succeed,
    test_sqlite_runs_in_wal_mode_with_a_busy_timeout,
)


@pytest.fixture(scope="module")
def pg_server():
    with postgres_server(bin_dir_or_skip()) as server:
        yield server


@pytest.fixture
def db_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database()
