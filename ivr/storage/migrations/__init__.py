"""Schema migrations (Alembic), applied by `SqlStorage` whenever it opens a database.

There is no alembic.ini: the script location is this folder and the open
connection is handed to env.py through `Config.attributes`, so an installed
package migrates its own database. Databases made before migrations existed
(the `calls`/`utterances` tables of `metadata.create_all`) are recognized and
stamped with the baseline revision first.

Several processes may open the same database at once (the IVR and the Rasa
action server, or two IVR instances). The caller runs `upgrade` inside a
transaction that holds the database's write lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: an advisory lock taken here), so one process migrates while the
others wait and then find nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent
BASELINE = "0001"  # calls + utterances, as create_all made them
_PG_LOCK_KEY = 4_801_734_221  # any constant: all IVR processes must agree on it


def config(connection: sa.engine.Connection) -> Config:
    """Alembic configuration for this package's scripts, running on `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: sa.engine.Connection) -> None:
    """Bring the schema to the newest revision inside the caller's open transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    cfg = config(connection)
    tables = set(sa.inspect(connection).get_table_names())
    if "calls" in tables and "alembic_version" not in tables:
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, "head")
