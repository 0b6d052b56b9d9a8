"""Bring a database to the newest schema with Alembic, from code (no alembic.ini needed)."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: concurrent starters on PostgreSQL migrate one after the other.
_PG_MIGRATION_LOCK = 7_310_402


# Kept by hand-written SQL in migration 0011, not by the models: the full-text index (SQLite's
# FTS5 table with its shadow tables, PostgreSQL's expression index), which autogenerate
# cannot describe.
FULL_TEXT_OBJECTS = ("messages_fts", "ix_messages_body_fts")


def outside_the_models(name: str | None, kind: str, _parent: object) -> bool:
    """False for the database objects the models do not describe (Alembic's `include_name`)."""
    return not (kind in ("table", "index") and (name or "").startswith(FULL_TEXT_OBJECTS))


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Alembic keeps the migration under way in module state: two at once in one process (several
# services on one event loop, as `smsagent eval --concurrency` runs them) would mix up.
_ONE_AT_A_TIME: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def migrate(engine: AsyncEngine, *, schema: str | None = None) -> None:
    lock = _ONE_AT_A_TIME.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _migrate(engine, schema)


async def _migrate(engine: AsyncEngine, schema: str | None) -> None:
    if engine.dialect.name == "sqlite":
        await _migrate_sqlite(engine)
        return
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            if schema:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade)


async def _migrate_sqlite(engine: AsyncEngine) -> None:
    """SQLite changes a table by copying it to a new one (Alembic's batch mode), which drops
    the old table under rows that refer to it: foreign keys are checked once the migration is
    done instead of during it. The pragma is ignored inside a transaction, so it is set on the
    driver's connection around the migration's transaction."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute("PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows without a parent: {broken[:5]}")
        finally:
            await driver.execute("PRAGMA foreign_keys=ON")


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
