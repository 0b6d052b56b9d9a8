"""Short links: a link in a text becomes `PUBLIC_URL/l/<code>`; following it redirects, counts
the visit and records `link.clicked` on the conversation."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text

from agent.links import shorten_plan
from storage.engine import create_engine
from storage.raw import Dialect, commit_plan
from tests.harness import PUBLIC_URL, Database, Service, count_rows
from webhooks.keys import DEPS

SHORT = re.compile(re.escape(PUBLIC_URL) + r"/l/([0-9A-Za-z]{8})")
BOOKING = "https://book.example.com/slots?week=12&who=PAT-10432"
HELP = "https://example.com/help"


async def _shorten(service: Service, body: str, conversation_id: str, message_id: str) -> str:
    engine = service.server.app[DEPS].engine
    plan = shorten_plan(
        Dialect(engine.dialect.name),
        text=body,
        workspace_id=service.server.app[DEPS].workspace_id,
        conversation_id=conversation_id,
        message_id=message_id,
        public_url=PUBLIC_URL,
    )
    return await commit_plan(engine, plan)


async def _follow(service: Service, path: str) -> tuple[int, str | None, Any]:
    assert service.http is not None
    async with service.http.get(service.url(path), allow_redirects=False) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers.get("Location"), body


async def _clicks(db: Database, code: str) -> int:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT clicks FROM short_links WHERE code = :code"), {"code": code}
            )
            return int(found.scalar_one())
    finally:
        await engine.dispose()


async def test_a_short_link_redirects_counts_and_shows_on_the_conversation(
    service: Service, db: Database
) -> None:
    status, kicked = await service.kickoff()
    assert status == 201, kicked
    conversation_id, message_id = kicked["conversation_id"], kicked["message_id"]

    body = f"Pick a time: {BOOKING}. Questions? (see {HELP}) Again: {BOOKING}!"
    short = await _shorten(service, body, conversation_id, message_id)

    booking, help_, again = SHORT.findall(short)
    assert booking == again != help_
    assert short == (
        f"Pick a time: {PUBLIC_URL}/l/{booking}. Questions? (see {PUBLIC_URL}/l/{help_}) "
        f"Again: {PUBLIC_URL}/l/{booking}!"
    )
    assert await count_rows(db, "short_links") == 2

    for visit in (1, 2):
        status, location, _ = await _follow(service, f"/l/{booking}")
        assert status == 302
        assert location == BOOKING
        assert await _clicks(db, booking) == visit
    status, location, _ = await _follow(service, f"/l/{help_}")
    assert (status, location) == (302, HELP)
    assert await _clicks(db, help_) == 1

    thread = await service.conversation(conversation_id)
    clicked = [e["data"] for e in thread["events"] if e["type"] == "link.clicked"]
    assert clicked == [
        {"code": booking, "message_id": message_id, "clicks": 1},
        {"code": booking, "message_id": message_id, "clicks": 2},
        {"code": help_, "message_id": message_id, "clicks": 1},
    ]


async def test_an_unknown_code_is_a_json_404_and_counts_nothing(
    service: Service, db: Database
) -> None:
    for path in ("/l/Zz9Zz9Zz", "/l/not-a-code!", "/l/" + "a" * 17):
        status, location, body = await _follow(service, path)
        assert status == 404, path
        assert location is None
        assert body["error"]["code"] == "not_found"
    assert await count_rows(db, "events") == 0


async def test_text_without_new_links_is_left_as_it_is(service: Service, db: Database) -> None:
    status, kicked = await service.kickoff()
    assert status == 201, kicked
    plain = "See you Tuesday at 3pm. Reply C to cancel."
    assert await _shorten(service, plain, kicked["conversation_id"], kicked["message_id"]) == plain

    already = f"Your booking: {PUBLIC_URL}/l/AbCd1234."
    assert (
        await _shorten(service, already, kicked["conversation_id"], kicked["message_id"]) == already
    )
    assert await count_rows(db, "short_links") == 0

    # A `)` that belongs to the link stays in it.
    wiki = "Read (https://en.wikipedia.org/wiki/Mercury_(planet))."
    short = await _shorten(service, wiki, kicked["conversation_id"], kicked["message_id"])
    [code] = SHORT.findall(short)
    assert short == f"Read ({PUBLIC_URL}/l/{code})."
    status, location, _ = await _follow(service, f"/l/{code}")
    assert (status, location) == (302, "https://en.wikipedia.org/wiki/Mercury_(planet)")
