"""The async engine and session factory, tuned per database.

SQLite: one writer connection (more only queue on the file lock and push p99 latency toward a
second), its hand-written transactions ordered so webhooks waiting on a commit go first, WAL so
readers never block it, `synchronous=NORMAL`, foreign keys on, and explicit
BEGIN so a read-then-write is one transaction (one process writes, so no upgrade races). Reads
that need no write (a turn's snapshot, transcripts) go to a separate pool of read-only
connections, each on its own thread, so they neither wait for nor delay the writer.
PostgreSQL: asyncpg with a pool, an optional schema as the search path; reads share the pool,
and hand-written transactions take its connections in the same order, webhooks first.
Both hide bound parameters from errors: they hold message bodies and phone numbers, and errors
end up in logs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.raw import gate_writes, queue_plans

SessionFactory = async_sessionmaker[AsyncSession]


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        writer = _sqlite_engine(url)
        queue_plans(writer)
        return writer
    connect_args: dict[str, Any] = {"timeout": 10}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_pre_ping=True,
        connect_args=connect_args,
        hide_parameters=True,
    )
    gate_writes(engine, slots=pool_size + pool_size // 2)
    return engine


def create_reader_engine(url: str, *, pool_size: int = 4) -> AsyncEngine | None:
    """SQLite: read-only connections beside the writer. None elsewhere: reads use the pool."""
    if not url.startswith("sqlite"):
        return None
    reader = _sqlite_engine(url, pool_size=pool_size, read_only=True)
    queue_plans(reader, connections=pool_size, writes=False)
    return reader


def _sqlite_engine(url: str, *, pool_size: int = 1, read_only: bool = False) -> AsyncEngine:
    engine = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": 30},
        hide_parameters=True,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
            *(["PRAGMA query_only=ON"] if read_only else []),
        ):
            cursor.execute(pragma)
        cursor.close()

    # A writer takes the write lock when its transaction begins: a transaction that reads and
    # then writes would otherwise be refused at once ("database is locked") whenever another
    # process (the CLI next to a running service) writes, as SQLite cannot wait on an upgrade.
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(*, sessions: SessionFactory) -> None:
    """Raise unless the database answers."""
    async with sessions() as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
