"""Hand-written SQL for the hot paths, in each driver's own placeholder and value formats.

The ORM and SQLAlchemy's statement compiler cost tens of microseconds per statement and per row;
the paths that run for every text (accept, lease, turn commit) write their SQL once, as strings
cached per shape, and pass plain tuples to the driver. Statements are written with `?`
placeholders and renumbered to `$n` for asyncpg.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

_PLACEHOLDER = re.compile(r"\?")


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
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

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
    return [tuple(row) for row in result]
