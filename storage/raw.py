"""Hand-written SQL for the hot paths, in each driver's own placeholder and value formats.

The ORM and SQLAlchemy's statement compiler cost tens of microseconds per statement and per row;
the paths that run for every text (accept, lease, turn commit) write their SQL once, as strings
cached per shape, and pass plain tuples to the driver. Statements are written with `?`
placeholders and renumbered to `$n` for asyncpg.

A multi-statement write is a `Plan`: a generator that yields `(sql, params)` and is sent back
the rows. On PostgreSQL it runs statement by statement over the connection. On SQLite the whole
transaction, BEGIN to COMMIT, runs as one call on the connection's own thread: aiosqlite costs a
thread round trip (~0.1 ms) per driver call, about 27 of them for an inbound batch otherwise.

SQLite's plans also share those calls (`PlanQueue`): every plan waiting for the writer when it
comes free runs in its next transaction, each in a savepoint of its own. A busy process answers
its thread hops only between everything else it has to do, so one hop per plan would cap the
writer at a few dozen commits a second under load, however short each is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import json
import re
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import JSON, Boolean, Date
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.types import UTCDateTime

_PLACEHOLDER = re.compile(r"\?")

T = TypeVar("T")
M = TypeVar("M", bound=SQLModel)
Statement = tuple[str, Sequence[Any]]
Plan = Generator[Statement, list[tuple[Any, ...]], T]


class Dialect:
    """How one database wants its SQL and values."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.postgres = name == "postgresql"

    def sql(self, statement: str) -> str:
        return _numbered(statement) if self.postgres else statement

    def ts(self, value: datetime | None) -> Any:
        """A UTC datetime as the `UTCDateTime` column stores it."""
        if value is None or self.postgres:
            return value
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def json(self, value: Any) -> str:
        return json.dumps(value)

    def flag(self, value: bool) -> Any:
        return value if self.postgres else int(value)


@lru_cache(maxsize=512)
def _numbered(statement: str) -> str:
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", statement)


def parse_ts(value: Any) -> datetime | None:
    """A timestamp read back with raw SQL, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def parse_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _parse_date(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value


class Columns(Generic[M]):
    """A table's columns for a hand-written SELECT (`alias.col, ...`), and its rows back into
    model objects, built without validation: what was stored is trusted, and read-only."""

    def __init__(self, model: type[M], alias: str) -> None:
        # Rows are built through the mapped attributes: a process that has not used the ORM
        # yet (a CLI command) must have its mappers set up first.
        configure_mappers()
        columns = list(model.__table__.columns)  # type: ignore[attr-defined]
        self._model = model
        self._names = [column.name for column in columns]
        self._parsers = [_parser(column.type) for column in columns]
        self.sql = ", ".join(f"{alias}.{name}" for name in self._names)
        self.width = len(columns)

    def load(self, row: Sequence[Any]) -> M:
        values = {
            name: parse(value) if parse is not None and value is not None else value
            for name, parse, value in zip(self._names, self._parsers, row, strict=True)
        }
        return cast(M, self._model.model_construct(**values))


def _parser(kind: Any) -> Any:
    if isinstance(kind, UTCDateTime):
        return parse_ts
    if isinstance(kind, JSON):
        return parse_json
    if isinstance(kind, Boolean):
        return bool
    if isinstance(kind, Date):
        return _parse_date
    return None


def marks(count: int, width: int = 1) -> str:
    """`(?,?),(?,?)` for `count` rows of `width` values; `?,?,?` when width is 1."""
    if width == 1:
        return ",".join("?" * count)
    row = "(" + ",".join("?" * width) + ")"
    return ",".join([row] * count)


async def run(
    conn: AsyncConnection, dialect: Dialect, statement: str, params: Sequence[Any] = ()
) -> CursorResult[Any]:
    return await conn.exec_driver_sql(dialect.sql(statement), tuple(params))


async def rows(
    conn: AsyncConnection, dialect: Dialect, statement: str, params: Sequence[Any] = ()
) -> list[Any]:
    """The rows of a query, as tuples."""
    result = await run(conn, dialect, statement, params)
    return [tuple(row) for row in result] if result.returns_rows else []


async def run_plan(conn: AsyncConnection, plan: Plan[T]) -> T:
    """Run `plan` statement by statement in the caller's transaction."""
    dialect = Dialect(conn.dialect.name)
    try:
        statement, params = next(plan)
        while True:
            found = await rows(conn, dialect, statement, params)
            statement, params = plan.send(found)
    except StopIteration as done:
        result: T = done.value
        return result


class WriterGate:
    """Turns at an engine's connections (`slots` at once), urgent ones first: a webhook waiting
    on its commit goes before background work (turns, sends, leases) however much is queued."""

    def __init__(self, slots: int = 1) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if not self._free or self._waiting:
            future = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, next(self._order), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._next()  # handed the turn just as it was cancelled: pass it on
                raise
        else:
            self._free -= 1
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


_GATES: weakref.WeakKeyDictionary[AsyncEngine, WriterGate] = weakref.WeakKeyDictionary()
_QUEUES: weakref.WeakKeyDictionary[AsyncEngine, PlanQueue] = weakref.WeakKeyDictionary()


def gate_writes(engine: AsyncEngine, slots: int = 1) -> None:
    """Order `commit_plan` calls on this engine's `slots` connections by urgency."""
    _GATES[engine] = WriterGate(slots)


def queue_plans(engine: AsyncEngine, *, connections: int = 1, writes: bool = True) -> None:
    """Run `commit_plan` calls on this SQLite engine through a `PlanQueue`."""
    _QUEUES[engine] = PlanQueue(engine, connections=connections, writes=writes)


async def finish_plans(engine: AsyncEngine) -> None:
    """Wait for the plans already handed to this engine's queue, before disposing of it."""
    queue = _QUEUES.get(engine)
    if queue is not None:
        await queue.finish()


class PlanQueue:
    """Plans for one SQLite engine (aiosqlite), many to a transaction and a thread hop.

    Plans wait in line, urgent ones first. Whenever one of the engine's `connections` is free,
    what waits (up to `max_batch`; only urgent plans while any wait) runs on it in one
    transaction. On a writer each plan gets a savepoint: one that fails is rolled back alone and
    fails only its own caller, and the rest commit. Nobody is answered before the COMMIT. No
    task outlives the line: a caller that finds a connection idle starts a drain, which ends
    when the line is empty.
    """

    def __init__(
        self, engine: AsyncEngine, *, connections: int = 1, writes: bool = True, max_batch: int = 16
    ) -> None:
        self._engine = engine
        self._connections = connections
        self._writes = writes
        self._max_batch = max_batch
        self._urgent: collections.deque[tuple[Plan[Any], asyncio.Future[Any]]] = collections.deque()
        self._rest: collections.deque[tuple[Plan[Any], asyncio.Future[Any]]] = collections.deque()
        self._draining = 0
        self._drains: set[asyncio.Task[None]] = set()  # held so none is collected mid-run
        self.batches = 0
        self.plans = 0

    async def submit(self, plan: Plan[T], *, urgent: bool = False) -> T:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._rest).append((plan, done))
        if self._draining < self._connections:
            self._draining += 1
            drain = asyncio.create_task(self._drain())
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return await done

    async def finish(self) -> None:
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    def _take(self) -> list[tuple[Plan[Any], asyncio.Future[Any]]]:
        # Urgent plans go alone, without background ones: their callers wait for the COMMIT.
        batch: list[tuple[Plan[Any], asyncio.Future[Any]]] = []
        for line in (self._urgent, self._rest):
            while line and len(batch) < self._max_batch:
                plan, done = line.popleft()
                if done.done():  # its caller went away before it ran
                    plan.close()
                else:
                    batch.append((plan, done))
            if batch:
                return batch
        return batch

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                await self._run(batch)
        finally:
            # Counted out in the same step that found the line empty: a plan queued after that
            # starts a drain of its own.
            self._draining -= 1

    async def _run(self, batch: list[tuple[Plan[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self._engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                outcomes = await driver._execute(
                    _batch_in_thread, driver._conn, [plan for plan, _ in batch], self._writes
                )
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    _fail(done, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.plans += len(batch)
        for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)


def _fail(done: asyncio.Future[Any], exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        done.cancel()
    else:
        done.set_exception(exc)


def _batch_in_thread(
    connection: sqlite3.Connection, plans: list[Plan[Any]], writes: bool
) -> list[tuple[bool, Any]]:
    """Several plans in one transaction on the SQLite connection's own thread: (ok, result or
    exception) for each. On a writer each runs in a savepoint, rolled back alone if it fails."""
    if len(plans) == 1:
        try:
            return [(True, _in_thread(connection, plans[0], writes))]
        except Exception as exc:
            return [(False, exc)]
    outcomes: list[tuple[bool, Any]] = []
    with _transaction(connection, writes) as cursor:
        for plan in plans:
            if writes:
                cursor.execute("SAVEPOINT plan")
            try:
                result = _drive(cursor, plan)
            except Exception as exc:
                if writes:
                    cursor.execute("ROLLBACK TO plan")
                    cursor.execute("RELEASE plan")
                outcomes.append((False, exc))
                continue
            if writes:
                cursor.execute("RELEASE plan")
            outcomes.append((True, result))
    return outcomes


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection, writes: bool) -> Iterator[sqlite3.Cursor]:
    """BEGIN, then COMMIT when the block ends, or ROLLBACK when it raises.

    A writer takes the write lock at BEGIN: a transaction that reads before it writes (a turn
    checks its lease first) would otherwise be refused at its first write, without waiting,
    whenever another process (the CLI beside the service) wrote since it began."""
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
    try:
        yield cursor
        cursor.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()


def _drive(cursor: sqlite3.Cursor, plan: Plan[T]) -> T:
    try:
        statement, params = next(plan)
        while True:
            cursor.execute(statement, tuple(params))
            statement, params = plan.send(cursor.fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


async def in_session(session: AsyncSession, build: Callable[[Dialect], Plan[T]]) -> T:
    """Run the plan `build` makes for this database in the session's transaction."""
    conn = await session.connection()
    return await run_plan(conn, build(Dialect(conn.dialect.name)))


async def commit_plan(engine: AsyncEngine, plan: Plan[T], *, urgent: bool = False) -> T:
    """Run `plan` in a transaction of its own and commit it. `urgent`: someone is waiting on
    this commit to answer a request (see `WriterGate`, `PlanQueue`)."""
    queue = _QUEUES.get(engine)
    if queue is not None:
        return await queue.submit(plan, urgent=urgent)
    gate = _GATES.get(engine)
    if gate is None:
        return await _commit(engine, plan)
    async with gate.turn(urgent=urgent):
        return await _commit(engine, plan)


async def _commit(engine: AsyncEngine, plan: Plan[T]) -> T:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if engine.dialect.name == "postgresql":
            # asyncpg straight: the transaction is ours from BEGIN to COMMIT, so SQLAlchemy's
            # per-statement bookkeeping buys nothing here.
            async with driver.transaction():
                return await _on_asyncpg(driver, plan)
        execute = getattr(driver, "_execute", None)
        if engine.dialect.name != "sqlite" or execute is None:
            async with conn.begin():
                return await run_plan(conn, plan)
        result: T = await execute(_in_thread, driver._conn, plan)
        return result


async def _on_asyncpg(connection: Any, plan: Plan[T]) -> T:
    try:
        statement, params = next(plan)
        while True:
            found = await connection.fetch(_numbered(statement), *params)
            statement, params = plan.send([tuple(row) for row in found])
    except StopIteration as done:
        result: T = done.value
        return result


def _in_thread(connection: sqlite3.Connection, plan: Plan[T], writes: bool) -> T:
    """The whole transaction, on the SQLite connection's own thread."""
    with _transaction(connection, writes) as cursor:
        return _drive(cursor, plan)
