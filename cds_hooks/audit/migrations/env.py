"""Alembic environment: migrations run on the connection `database.upgrade()` hands over."""

from alembic import context

from cds_hooks.audit.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
