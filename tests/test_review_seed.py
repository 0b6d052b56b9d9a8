"""The seeded week reads back the same on SQLite and PostgreSQL, whole and consistent."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import text

from storage.engine import create_engine
from storage.raw import parse_ts
from tests.harness import Database, count_rows, read_conversation
from tests.review_seed import (
    FAILED,
    FAST_CONFIRM,
    FIXED_NOW,
    OLD_THREAD,
    TAKEN_OVER,
    review_rows,
    seed_database,
)

_ID = re.compile(r"^(conv|msg|run|evt|ct|apt|ws|usr)_[0-9a-hjkmnp-tv-z]{26}$")


async def test_the_week_is_seeded_whole(db: Database) -> None:
    await seed_database(db)

    counts = {
        table: await count_rows(db, table)
        for table in (
            "workspaces",
            "sender_numbers",
            "users",
            "memberships",
            "contacts",
            "appointments",
            "conversations",
            "messages",
            "agent_runs",
            "events",
        )
    }
    assert counts == {
        "workspaces": 2,
        "sender_numbers": 2,
        "users": 1,
        "memberships": 1,
        "contacts": 19,
        "appointments": 9,
        "conversations": 19,
        "messages": 61,
        "agent_runs": 25,
        "events": 29,
    }


async def test_threads_end_with_their_newest_message(db: Database) -> None:
    await seed_database(db)
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            stale = (
                await conn.execute(
                    text(
                        "SELECT c.id FROM conversations c WHERE c.last_message_at <> "
                        "(SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = c.id)"
                        " OR c.updated_at <> c.last_message_at"
                    )
                )
            ).all()
            latest = (await conn.execute(text("SELECT MAX(created_at) FROM messages"))).scalar()
    finally:
        await engine.dispose()
    assert stale == []
    newest = parse_ts(latest)
    assert newest is not None
    assert FIXED_NOW - timedelta(days=1) < newest < FIXED_NOW


async def test_a_thread_reads_back_as_people_see_it(db: Database) -> None:
    await seed_database(db)

    thread = await read_conversation(db, TAKEN_OVER)

    human = [m for m in thread.messages if m.author == "human"]
    assert [m.author_name for m in human] == ["Maria Lopez"]
    types = [e.type for e in thread.events]
    assert types.index("conversation.taken_over") < types.index("conversation.handed_back")
    assert {"text": "Called her back, all sorted", "author": "Maria Lopez"} in [
        e.data for e in thread.events if e.type == "conversation.note"
    ]


def test_ids_look_like_the_services_own() -> None:
    ids = [str(getattr(row, "id", "")) for row in review_rows() if hasattr(row, "id")]
    not_like = [i for i in ids if i != "ws_default" and not _ID.match(i)]
    assert not_like == []
    assert len(ids) == len(set(ids))
    # One reminder batch: two threads that a short id cannot tell apart.
    assert FAILED[:21] == FAST_CONFIRM[:21]
    assert FAILED != FAST_CONFIRM
    assert OLD_THREAD in ids
