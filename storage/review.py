"""Finding threads for people who review them: filters, short ids, full-text search.

Read-only, hand-written SQL on both databases. Text search goes through the full-text index
(SQLite FTS5, PostgreSQL's GIN over `to_tsvector('simple', body)`), never a scan of every body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Contact, Conversation
from storage.raw import Columns, Dialect, parse_ts, rows

_WORD = re.compile(r"\w+", re.UNICODE)
# Longest ids: a prefix of a whole id or of the part after `conv_`.
_ID_CHARS = re.compile(r"^[0-9A-Za-z_]{1,64}$")


class AmbiguousId(LookupError):
    """A short id that starts more than one thread."""

    def __init__(self, prefix: str, matches: Sequence[str]) -> None:
        super().__init__(prefix)
        self.prefix = prefix
        self.matches = list(matches)


class NoSuchId(LookupError):
    """No thread has (or starts with) this id."""


class BadQuery(ValueError):
    """A search with no word in it."""


@dataclass(frozen=True)
class ReviewFilter:
    workspace_id: str | None = None
    status: str | None = None
    mode: str | None = None
    needs_person: bool = False
    tag: str | None = None
    opted_out: bool | None = None
    # Either a whole E.164 number or the last digits of one.
    phone: str | None = None
    phone_suffix: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Keyset: threads older than this (last_message_at, id), newest first.
    before: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class ThreadRow:
    """One thread in a list: enough to choose it, with its newest line."""

    id: str
    workspace_id: str
    status: str
    mode: str
    handoff_reason: str | None
    contact_name: str | None
    contact_phone: str
    tags: list[str]
    opted_out: bool
    message_count: int
    last_message_at: datetime
    last_direction: str | None
    last_text: str | None
    needs_person: bool


@dataclass(frozen=True)
class SearchHit:
    message_id: str
    conversation_id: str
    workspace_id: str
    direction: str
    author: str
    created_at: datetime
    # The body with the matched words between \x02 and \x03 (the renderer marks them).
    snippet: str
    contact_phone: str
    contact_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


MARK_START, MARK_END = "\x02", "\x03"


def words(text: str) -> list[str]:
    """The words a search looks for: letters and digits, lower-cased, in order."""
    return [w.lower() for w in _WORD.findall(text)]


def fts_query(dialect: Dialect, text: str) -> str:
    """Every word must occur; the last may be the start of a word (search as you type)."""
    found = words(text)
    if not found:
        raise BadQuery("give at least one word to search for")
    if dialect.postgres:
        return " & ".join([*found[:-1], f"{found[-1]}:*"])
    return " ".join([*(f'"{w}"' for w in found[:-1]), f'"{found[-1]}"*'])


def _matching_ids_sql(dialect: Dialect) -> str:
    """Ids of the messages whose body matches the bound query."""
    if dialect.postgres:
        return (
            "SELECT fm.id FROM messages fm "
            "WHERE to_tsvector('simple', fm.body) @@ to_tsquery('simple', ?)"
        )
    return (
        "SELECT fm.id FROM messages fm WHERE fm.rowid IN "
        "(SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)"
    )


async def resolve_conversation_id(
    conn: AsyncConnection, ref: str, *, workspace_id: str | None = None
) -> str:
    """The whole id of the one thread `ref` names: the id itself, or a unique start of it (with
    or without `conv_`, in any case)."""
    dialect = Dialect(conn.dialect.name)
    text = ref.strip()
    if not _ID_CHARS.match(text):
        raise NoSuchId(f"not a conversation id: {ref!r}")
    body = text.split("_", 1)[1] if "_" in text else text
    prefix = "conv_" + body.lower()
    # A range over the primary key: the index answers it on both databases.
    sql = "SELECT id FROM conversations WHERE id >= ? AND id < ?"
    params: list[Any] = [prefix, prefix + "\uffff"]
    if workspace_id is not None:
        sql += " AND workspace_id = ?"
        params.append(workspace_id)
    found = [str(r[0]) for r in await rows(conn, dialect, sql + " ORDER BY id LIMIT 6", params)]
    if prefix in found:
        return prefix
    if not found:
        raise NoSuchId(f"no conversation {ref}")
    if len(found) > 1:
        raise AmbiguousId(text, found)
    return found[0]


async def list_threads(
    conn: AsyncConnection, where: ReviewFilter, *, limit: int = 50
) -> list[ThreadRow]:
    """Threads matching `where`, newest activity first."""
    dialect = Dialect(conn.dialect.name)
    conversation, contact = Columns(Conversation, "c"), Columns(Contact, "p")
    last = "SELECT {col} FROM messages lm WHERE lm.conversation_id = c.id " + (
        "ORDER BY lm.created_at DESC, lm.id DESC LIMIT 1"
    )
    clauses, params = _where(dialect, where)
    sql = (
        f"SELECT {conversation.sql}, {contact.sql}, "
        "(SELECT COUNT(*) FROM messages cm WHERE cm.conversation_id = c.id), "
        f"({last.format(col='lm.direction')}), ({last.format(col='lm.body')}) "
        "FROM conversations c JOIN contacts p ON p.id = c.contact_id"
        + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        + " ORDER BY c.last_message_at DESC, c.id DESC LIMIT ?"
    )
    found = await rows(conn, dialect, sql, [*params, limit])
    width = conversation.width
    result = []
    for row in found:
        thread = conversation.load(row[:width])
        person = contact.load(row[width : width + contact.width])
        count, direction, text = row[width + contact.width :]
        name = " ".join(n for n in (person.first_name, person.last_name) if n) or None
        result.append(
            ThreadRow(
                id=thread.id,
                workspace_id=thread.workspace_id,
                status=thread.status,
                mode=thread.mode,
                handoff_reason=thread.handoff_reason,
                contact_name=name,
                contact_phone=person.phone,
                tags=list(person.tags or []),
                opted_out=bool(person.opted_out),
                message_count=int(count),
                last_message_at=thread.last_message_at,
                last_direction=direction,
                last_text=text,
                needs_person=_needs_person(thread.status, thread.mode, direction),
            )
        )
    return result


def _needs_person(status: str, mode: str, last_direction: str | None) -> bool:
    return status == "pending" or (
        status == "open" and mode == "human" and last_direction == "inbound"
    )


def _where(dialect: Dialect, where: ReviewFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.workspace_id is not None:
        clauses.append("c.workspace_id = ?")
        params.append(where.workspace_id)
    if where.status is not None:
        clauses.append("c.status = ?")
        params.append(where.status)
    if where.mode is not None:
        clauses.append("c.mode = ?")
        params.append(where.mode)
    if where.needs_person:
        clauses.append(
            "(c.status = 'pending' OR (c.status = 'open' AND c.mode = 'human' AND "
            "(SELECT lm.direction FROM messages lm WHERE lm.conversation_id = c.id "
            "ORDER BY lm.created_at DESC, lm.id DESC LIMIT 1) = 'inbound'))"
        )
    if where.tag is not None:
        # Tags are a JSON list of strings written compactly: the tag's JSON text is in it
        # exactly when the tag is.
        clauses.append("CAST(p.tags AS TEXT) LIKE ? ESCAPE '\\'")
        params.append(f"%{_like(json.dumps(where.tag))}%")
    if where.opted_out is not None:
        clauses.append("p.opted_out = ?")
        params.append(dialect.flag(where.opted_out))
    if where.phone is not None:
        clauses.append("p.phone = ?")
        params.append(where.phone)
    if where.phone_suffix is not None:
        clauses.append("p.phone LIKE ? ESCAPE '\\'")
        params.append(f"%{_like(where.phone_suffix)}")
    if where.since is not None:
        clauses.append("c.last_message_at >= ?")
        params.append(dialect.ts(where.since))
    if where.until is not None:
        clauses.append("c.last_message_at < ?")
        params.append(dialect.ts(where.until))
    if where.before is not None:
        moment, before_id = where.before
        clauses.append("(c.last_message_at < ? OR (c.last_message_at = ? AND c.id < ?))")
        params += [dialect.ts(moment), dialect.ts(moment), before_id]
    if where.text is not None:
        clauses.append(
            "c.id IN (SELECT sm.conversation_id FROM messages sm WHERE sm.id IN "
            f"({_matching_ids_sql(dialect)}))"
        )
        params.append(fts_query(dialect, where.text))
    return clauses, params


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_messages(
    conn: AsyncConnection,
    text: str,
    *,
    workspace_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[SearchHit]:
    """Messages whose body holds every word of `text`, newest first, with the words marked."""
    dialect = Dialect(conn.dialect.name)
    query = fts_query(dialect, text)
    clauses, params = [], []
    if workspace_id is not None:
        clauses.append("m.workspace_id = ?")
        params.append(workspace_id)
    if since is not None:
        clauses.append("m.created_at >= ?")
        params.append(dialect.ts(since))
    if until is not None:
        clauses.append("m.created_at < ?")
        params.append(dialect.ts(until))
    extra = "".join(f" AND {c}" for c in clauses)
    columns = (
        "m.id, m.conversation_id, m.workspace_id, m.direction, m.author, m.created_at, "
        "p.phone, p.first_name, p.last_name"
    )
    if dialect.postgres:
        # The newest matches from `messages` alone, then their threads' contacts and a headline
        # for just those: joined before the limit, every match cost two lookups (over 100 ms
        # for a word in 10,000 texts).
        sql = (
            f"SELECT {columns}, ts_headline('simple', m.body, to_tsquery('simple', ?), "
            "'StartSel=\x02, StopSel=\x03, MaxWords=24, MinWords=12') "
            "FROM (SELECT m.id, m.conversation_id, m.workspace_id, m.direction, m.author, "
            "m.created_at, m.body FROM messages m WHERE to_tsvector('simple', m.body) @@ "
            f"to_tsquery('simple', ?){extra} ORDER BY m.created_at DESC, m.id DESC LIMIT ?) m "
            "JOIN conversations c ON c.id = m.conversation_id "
            "JOIN contacts p ON p.id = c.contact_id ORDER BY m.created_at DESC, m.id DESC"
        )
        found = await rows(conn, dialect, sql, [query, query, *params, limit])
    else:
        # FTS5 walks its matches in rowid order, which is insertion order: newest first
        # without sorting every match.
        sql = (
            f"SELECT {columns}, snippet(messages_fts, 0, '\x02', '\x03', '…', 14) "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "JOIN contacts p ON p.id = c.contact_id "
            f"WHERE messages_fts MATCH ?{extra} ORDER BY messages_fts.rowid DESC LIMIT ?"
        )
        found = await rows(conn, dialect, sql, [query, *params, limit])
    hits = []
    for row in found:
        moment = parse_ts(row[5])
        assert moment is not None
        name = " ".join(n for n in (row[7], row[8]) if n) or None
        hits.append(
            SearchHit(
                message_id=str(row[0]),
                conversation_id=str(row[1]),
                workspace_id=str(row[2]),
                direction=str(row[3]),
                author=str(row[4]),
                created_at=moment,
                contact_phone=str(row[6]),
                contact_name=name,
                snippet=str(row[9]),
            )
        )
    return hits


async def thread_keys(
    conn: AsyncConnection, where: ReviewFilter, *, limit: int
) -> list[tuple[str, datetime]]:
    """(id, last activity) of the threads matching `where`, newest first: a page of an export,
    which then loads each page whole."""
    dialect = Dialect(conn.dialect.name)
    clauses, params = _where(dialect, where)
    needs_contact = any(c.startswith(("p.", "CAST(p.")) for c in clauses)
    sql = (
        "SELECT c.id, c.last_message_at FROM conversations c"
        + (" JOIN contacts p ON p.id = c.contact_id" if needs_contact else "")
        + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        + " ORDER BY c.last_message_at DESC, c.id DESC LIMIT ?"
    )
    found = await rows(conn, dialect, sql, [*params, limit])
    keys = []
    for row in found:
        moment = parse_ts(row[1])
        assert moment is not None
        keys.append((str(row[0]), moment))
    return keys


async def count_threads(conn: AsyncConnection, where: ReviewFilter) -> int:
    dialect = Dialect(conn.dialect.name)
    clauses, params = _where(dialect, where)
    sql = "SELECT COUNT(*) FROM conversations c JOIN contacts p ON p.id = c.contact_id" + (
        f" WHERE {' AND '.join(clauses)}" if clauses else ""
    )
    found = await rows(conn, dialect, sql, params)
    return int(found[0][0])
