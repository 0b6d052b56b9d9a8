"""The CLI's way into the database: read without blocking a running service, write after
bringing the schema up to date, and say plainly when the database is missing or newer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.settings import Settings
from storage.engine import (
    SessionFactory,
    create_engine,
    create_reader_engine,
    create_session_factory,
)
from storage.migrate import alembic_config, migrate
from storage.raw import finish_plans

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SMSAGENT_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise click.ClickException(f"bad configuration: {problems}") from exc


def read_db(settings: Settings, query: Callable[[SessionFactory], Awaitable[T]]) -> T:
    """Run a read-only query against the configured database, once its schema is known to be
    the one this version reads."""
    path = settings.sqlite_path()
    if path is not None and not Path(path).exists():
        raise click.ClickException(f"no database at {path}: start the service once with `serve`")
    return run_sync(_query(settings, query))


def write_db(settings: Settings, change: Callable[[SessionFactory], Awaitable[T]]) -> T:
    """Run a change against the configured database (brought to the current schema first)."""
    return run_sync(_change(settings, change))


async def _change(settings: Settings, change: Callable[[SessionFactory], Awaitable[T]]) -> T:
    if (path := settings.sqlite_path()) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url, schema=settings.database_schema, pool_size=1)
    try:
        await _refuse_newer(engine, settings)
        await migrate(engine, schema=settings.database_schema)
        return await change(create_session_factory(engine))
    finally:
        await finish_plans(engine)
        await engine.dispose()


async def _query(settings: Settings, query: Callable[[SessionFactory], Awaitable[T]]) -> T:
    # SQLite: a read-only connection, which never waits for (or delays) a running service.
    engine = create_reader_engine(settings.database_url, pool_size=1) or create_engine(
        settings.database_url, schema=settings.database_schema
    )
    try:
        await check_schema(engine, settings)
        return await query(create_session_factory(engine))
    finally:
        await finish_plans(engine)
        await engine.dispose()


def _revisions() -> tuple[str, set[str]]:
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None
    return head, {s.revision for s in scripts.walk_revisions()}


async def _stored_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at; None when it holds no smsagent schema."""
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except (OperationalError, ProgrammingError) as exc:
        if "alembic_version" in str(exc):
            return None
        raise
    except DBAPIError as exc:
        raise click.ClickException(f"cannot read the database: {_reason(exc)}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from exc
    return str(found[0][0]) if found else None


async def _refuse_newer(engine: AsyncEngine, settings: Settings) -> None:
    stored = await _stored_revision(engine)
    head, known = _revisions()
    if stored is not None and stored not in known:
        raise click.ClickException(_newer(stored, head, settings))


async def check_schema(engine: AsyncEngine, settings: Settings) -> None:
    stored = await _stored_revision(engine)
    head, known = _revisions()
    where = _where(settings)
    if stored is None:
        raise click.ClickException(
            f"{where} holds no smsagent data: start the service once with `serve`"
        )
    if stored not in known:
        raise click.ClickException(_newer(stored, head, settings))
    if stored != head:
        raise click.ClickException(
            f"{where} is at schema {stored}, older than this smsagent's {head}: start "
            "`smsagent serve` once (it upgrades the schema), then read it again"
        )


def _newer(stored: str, head: str, settings: Settings) -> str:
    return (
        f"{_where(settings)} is at schema {stored}, newer than this smsagent knows (up to "
        f"{head}): upgrade smsagent to read it"
    )


def _where(settings: Settings) -> str:
    path = settings.sqlite_path()
    return f"the database at {path}" if path is not None else "the database"


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
