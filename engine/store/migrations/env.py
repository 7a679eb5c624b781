"""Alembic environment: always run programmatically with a connection from the Store."""

from __future__ import annotations

from alembic import context

from engine.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the alembic CLI is not the way in
    raise RuntimeError("run migrations with `disparo db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
