"""Alembic environment: runs the migrations on the connection `ivr.storage.migrations.upgrade` passes in.

Online mode only; the caller owns the transaction, so this adds none.
`target_metadata` is the storage's table metadata, which lets
`alembic.command.revision(config(conn), autogenerate=True)` draft the next
revision from the difference.
"""

from alembic import context

from ivr.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
