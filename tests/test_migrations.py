"""Migrations: a database with rows in it reaches the newest schema, which matches the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (the tables the models declare)
from storage.engine import create_engine
from storage.migrate import alembic_config, migrate, outside_the_models
from tests.harness import Database

STAMP = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_database_with_rows_reaches_the_newest_schema(db: Database) -> None:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.begin() as conn:
            if db.schema:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0008"))
            await conn.execute(
                text(
                    "INSERT INTO workspaces (id, name, business_name, timezone, vertical, "
                    "closed_days, scheduling, appointment_types, avochato_auth_id, "
                    "avochato_secret_hash, created_at, updated_at) VALUES ('ws_old', 'Old', "
                    "'Old', 'UTC', 'generic', '[]', 'builtin', '{}', 'aid_old', 'hash_old', "
                    ":stamp, :stamp)"
                ),
                {"stamp": STAMP},
            )
            await conn.execute(
                text(
                    "INSERT INTO contacts (id, workspace_id, phone, custom_fields, tags, "
                    "opted_out, blocked, created_at, updated_at) VALUES ('ct_old', 'ws_old', "
                    "'+13105551234', '{}', '[]', false, false, :stamp, :stamp)"
                ),
                {"stamp": STAMP},
            )
        await migrate(engine, schema=db.schema)

        async with engine.connect() as conn:
            owner = (
                await conn.execute(
                    text(
                        "SELECT u.auth_id, u.auth_secret_hash, u.home_workspace_id, m.role "
                        "FROM users u JOIN memberships m ON m.user_id = u.id"
                    )
                )
            ).fetchall()
            assert [tuple(row) for row in owner] == [("aid_old", "hash_old", "ws_old", "owner")]
            phone = (await conn.execute(text("SELECT phone FROM contacts"))).scalar_one()
            assert phone == "+13105551234"
            if engine.dialect.name == "sqlite":
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1

            def differences(sync_conn: Connection) -> list[Any]:
                context = MigrationContext.configure(
                    sync_conn, opts={"include_name": outside_the_models}
                )
                return list(compare_metadata(context, SQLModel.metadata))

            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()
