"""Alembic environment: runs on the connection `storage.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on the metadata)
from storage.migrate import outside_the_models

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through storage.migrate, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=outside_the_models,
)
with context.begin_transaction():
    context.run_migrations()
