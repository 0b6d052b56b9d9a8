"""The inbox API's broadcasts: drafts and their audiences, publishing now or later, paced texts
through the native send, counters from what happened, replies answered by the agent."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply
from agent.workspaces import Credentials
from storage.engine import create_engine, create_reader_engine, create_session_factory
from storage.models import Contact
from storage.raw import finish_plans
from storage.types import new_id, utcnow
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, wait_until
from tests.inbox import inbox
from tests.workspaces import new_workspace, text_in

NUMBER = "+15550002222"
# The seed's `via_field` parameters, as its JSON example writes them.
BY_EMAIL: dict[str, Any] = {"via_field[field]": "email", "via_field[value]": "bob@mctest.com"}
FAST = 500.0  # texts a second: pacing out of the way

LISTED_KEYS = {
    "id",
    "name",
    "message",
    "media_url",
    "estimated_segments_sms",
    "estimated_segments_mms",
    "status_callback",
    "status",
    "created_at",
    "updated_at",
    "scheduled_for",
    "completed_at",
    "user",
    "assign_to_user_id",
    "boost_multiplier",
}
COUNTED_KEYS = LISTED_KEYS | {
    "sms_errors",
    "mms_errors",
    "audience",
    "contacts_count",
    "attempted",
    "delivered",
    "undelivered",
    "responded",
    "replied_stop",
}
EDITED_KEYS = COUNTED_KEYS | {"pending_contacts_count"}
USER_KEYS = {
    "email",
    "id",
    "name",
    "image_url",
    "signed_in_at",
    "avobot_id",
    "phone",
    "phone_formatted",
    "created_at",
    "require_2fa",
    "mfa_app_valid",
    "phone_valid",
}


@pytest.fixture
async def callbacks() -> Any:
    """Where a broadcast's `status_callback` points: the bodies POSTed to it."""
    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/statuses", take)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/statuses")), received
    await server.close()


# --- Helpers ------------------------------------------------------------------------------------


async def _contacts(db: Database, workspace_id: str, *rows: dict[str, Any]) -> list[str]:
    """Contacts as the inbox keeps them (tags, profile, custom variables); their ids."""
    engine = create_engine(db.url, schema=db.schema)
    ids = [new_id("ct") for _ in rows]
    try:
        async with create_session_factory(engine)() as session, session.begin():
            for contact_id, row in zip(ids, rows, strict=True):
                session.add(Contact(id=contact_id, workspace_id=workspace_id, **row))
    finally:
        await engine.dispose()
    return ids


async def _sql(db: Database, statement: str, **params: Any) -> list[Any]:
    """A read, on a read-only connection where the database is SQLite (it never holds up the
    service's writer)."""
    engine = create_reader_engine(db.url) or create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(statement), params)).all())
    finally:
        await finish_plans(engine)
        await engine.dispose()


async def _create(service: Service, ws: Credentials, **params: Any) -> dict[str, Any]:
    status, body = await inbox(service, ws, "POST", "/v1/broadcasts", **params)
    assert status == 200, body
    return dict(body["data"]["broadcast"])


async def _fetch(service: Service, ws: Credentials, broadcast_id: str) -> dict[str, Any]:
    status, body = await inbox(service, ws, "GET", f"/v1/broadcasts/{broadcast_id}")
    assert status == 200, body
    return dict(body["data"]["broadcasts"][0])


async def _publish(service: Service, ws: Credentials, broadcast_id: str, **params: Any) -> Any:
    status, body = await inbox(
        service, ws, "POST", f"/v1/broadcasts/{broadcast_id}/publish", **params
    )
    assert status == 200, body
    return body["data"]["broadcast"]


async def _until_completed(
    service: Service, ws: Credentials, broadcast_id: str, within: float = 15.0
) -> dict[str, Any]:
    async def done() -> bool:
        return bool((await _fetch(service, ws, broadcast_id))["status"] == "completed")

    await wait_until(done, within=within, what="the broadcast to complete")
    return await _fetch(service, ws, broadcast_id)


def _to(twilio: TwilioStub, phone: str) -> list[dict[str, str]]:
    return [m for m in twilio.messages if m["To"] == phone]


async def _sent(service: Service, db: Database, broadcast_id: str, count: int) -> None:
    """Wait until the broadcast's `count` texts were taken by the provider."""

    async def taken() -> bool:
        rows = await _sql(
            db,
            "SELECT count(*) FROM broadcast_recipients r JOIN messages m ON m.id = r.message_id "
            "WHERE r.broadcast_id = :b AND m.status = 'sent'",
            b=broadcast_id,
        )
        return int(rows[0][0]) >= count

    await wait_until(taken, what=f"{count} texts sent")


async def _status_callback(
    service: Service, twilio: TwilioStub, phone: str, status: str, code: str | None = None
) -> None:
    [sent] = _to(twilio, phone)
    path = sent["StatusCallback"].split("sms.example.test", 1)[1]
    params = {"MessageSid": sent["sid"], "MessageStatus": status}
    if code:
        params["ErrorCode"] = code
    answer, _, _ = await service.twilio_post(path, params)
    assert answer == 204


async def _creator(db: Database, ws: Credentials) -> str:
    [(user_id,)] = await _sql(db, "SELECT id FROM users WHERE auth_id = :a", a=ws.avochato_auth_id)
    return str(user_id)


# --- The seed's examples ------------------------------------------------------------------------


async def test_the_documented_requests_as_printed(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(broadcast_per_second=FAST)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    first, _, _, _, fifth, _ = await _contacts(
        db,
        ws.id,
        {"phone": "+13035550101", "first_name": "Ann"},
        {"phone": "+13035550102", "tags": ["tag1"]},
        {"phone": "+13035550103", "tags": ["tag2", "other"]},
        {"phone": "+13035550104", "email": "bob@mctest.com"},
        {"phone": "+13035550105"},
        {"phone": "+13035550106", "tags": ["tag3"]},
    )

    # Create Broadcast, as printed (the JSON keys `via_field[field]` and `via_field[value]`).
    status, body = await inbox(
        service,
        ws,
        "POST",
        "/v1/broadcasts",
        message="new test message",
        media_url="https://somesite.com/pretty.jpg",
        status_callback="https://somesite.com/some_callback_route",
        name="My New Broadcast",
        via_tags="tag1,tag2",
        via_contact_ids=first,
        via_phone_numbers="5105551234,4155551234",
        **BY_EMAIL,
    )
    assert status == 200, body
    assert body["status"] == 200
    created = body["data"]["broadcast"]
    assert set(created) == EDITED_KEYS
    assert set(created["user"]) == USER_KEYS
    assert created["user"]["id"] == await _creator(db, ws)
    assert created["status"] == "draft"
    assert created["scheduled_for"] == 0.0
    assert created["completed_at"] is None
    assert (created["estimated_segments_sms"], created["estimated_segments_mms"]) == (1, 1)
    assert (created["sms_errors"], created["mms_errors"]) == ({}, {})
    # Ann (by id), tag1 and tag2, Bob's email, and the two numbers, now contacts.
    assert created["audience"] == created["contacts_count"] == 6
    assert created["pending_contacts_count"] == 6
    assert created["attempted"] == created["delivered"] == 0
    new = await _sql(
        db,
        "SELECT phone FROM contacts WHERE workspace_id = :w AND phone IN (:a, :b)",
        w=ws.id,
        a="+15105551234",
        b="+14155551234",
    )
    assert len(new) == 2
    broadcast_id = created["id"]

    # Update Broadcast, as printed: the text changes, the audience grows.
    status, body = await inbox(
        service,
        ws,
        "POST",
        f"/v1/broadcasts/{broadcast_id}",
        message="new test message",
        media_url="https://somesite.com/pretty2.jpg",
        name="My Other Broadcast",
        via_tags="tag2,tag3",
        via_contact_ids=fifth,
        via_phone_numbers="+15105551234,+14155551234",
        **BY_EMAIL,
    )
    assert status == 200, body
    updated = body["data"]["broadcast"]
    assert set(updated) == EDITED_KEYS
    assert updated["name"] == "My Other Broadcast"
    assert updated["media_url"] == "https://somesite.com/pretty2.jpg"
    assert updated["audience"] == 8  # and the fifth contact, and tag3's
    assert updated["updated_at"] > updated["created_at"]

    # Audience Count, as printed: the count alone.
    status, body = await inbox(service, ws, "GET", f"/v1/broadcasts/{broadcast_id}/audience_count")
    assert (status, body) == (200, {"data": {"count": 8}})

    other = await _create(service, ws, message="Dolorem amet iure dicta.")
    # Fetch Broadcast(s), as printed: ids comma-separated (`%2C`), a page.
    status, body = await inbox(
        service, ws, "GET", f"/v1/broadcasts/{broadcast_id}%2C{other['id']}", page=1
    )
    assert status == 200, body
    assert body["page"] == 1
    fetched = body["data"]["broadcasts"]
    assert [b["id"] for b in fetched] == [broadcast_id, other["id"]]
    assert all(set(b) == COUNTED_KEYS for b in fetched)
    assert fetched[1]["audience"] == 0
    assert (fetched[1]["estimated_segments_mms"], fetched[1]["media_url"]) == (0, None)

    # List Broadcasts, as printed: newest first, without counters.
    status, body = await inbox(service, ws, "GET", "/v1/broadcasts", page=1)
    assert status == 200, body
    assert (body["page"], body["limit"]) == (1, 30)
    listed = body["data"]["broadcasts"]
    assert [b["id"] for b in listed] == [other["id"], broadcast_id]
    assert all(set(b) == LISTED_KEYS for b in listed)

    # Publish Broadcast, as printed: `asap` wins over a `scheduled_for` in the past.
    published = await _publish(
        service, ws, broadcast_id, scheduled_for=1774943782.8891242, asap=True
    )
    assert set(published) == COUNTED_KEYS
    assert published["status"] == "sending"
    assert abs(published["scheduled_for"] - time.time()) < 30
    done = await _until_completed(service, ws, broadcast_id)
    assert done["completed_at"] >= done["scheduled_for"]
    await twilio.wait_for_messages(8)
    assert len(twilio.messages) == 8
    assert {m["Body"] for m in twilio.messages} == {"new test message"}
    assert {m["MediaUrl"] for m in twilio.messages} == {"https://somesite.com/pretty2.jpg"}


async def test_created_at_bounds_the_list(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    older = await _create(service, ws, message="First")
    await asyncio.sleep(0.05)
    newer = await _create(service, ws, message="Second")
    middle = (older["created_at"] + newer["created_at"]) / 2
    for bounds, expected in (
        ({"created_at[from]": middle}, [newer["id"]]),
        ({"created_at[to]": middle}, [older["id"]]),
        ({"created_at[from]": older["created_at"] - 1}, [newer["id"], older["id"]]),
    ):
        status, body = await inbox(service, ws, "GET", "/v1/broadcasts", **bounds)
        assert status == 200, body
        assert [b["id"] for b in body["data"]["broadcasts"]] == expected


# --- Audiences ----------------------------------------------------------------------------------


async def test_an_audience_by_each_way_of_choosing(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    theirs = await new_workspace(db, "Other Dental", "+15550003333")
    ann, bob, _, _, eve = await _contacts(
        db,
        ws.id,
        {
            "phone": "+13035550101",
            "first_name": "Ann",
            "last_name": "Lee",
            "email": "ann@example.com",
            "tags": ["vip", "new"],
            "profile": {"city": "Denver", "priority": 5, "loyalty": "gold"},
        },
        {
            "phone": "+13035550102",
            "tags": ["vip"],
            "custom_fields": {"plan": "gold"},
            "profile": {"city": "Boulder", "priority": 0},
        },
        {"phone": "+13035550103", "tags": ["VIP"], "opted_out": True},
        {"phone": "+13035550104", "profile": {"salesforce_object_type": "Lead"}},
        {"phone": "+13035550105", "custom_fields": {"plan": "silver"}},
    )
    await _contacts(db, theirs.id, {"phone": "+13035550101", "tags": ["vip"]})

    async def size(via: str = "json", **audience: Any) -> int:
        created = await _create(service, ws, message="Hello", via=via, **audience)
        status, body = await inbox(
            service, ws, "GET", f"/v1/broadcasts/{created['id']}/audience_count"
        )
        assert status == 200, body
        assert body["data"]["count"] == created["audience"]
        return int(body["data"]["count"])

    assert await size(via_tags="vip") == 2
    assert await size(via_tags="vip,VIP") == 3
    assert await size(via_tags=["new", "nobody"]) == 1
    assert await size(via_contact_ids=f"{ann},{eve}") == 2
    # Any format; a number not yet a contact becomes one.
    assert await size(via_phone_numbers="(303) 555-0101, 303.555.0102, +1 720 555 0199") == 3
    assert await _sql(db, "SELECT id FROM contacts WHERE phone = '+17205550199'")

    def by(field: str, value: Any) -> dict[str, Any]:
        return {"via_field[field]": field, "via_field[value]": value}

    assert await size(**by("name", "Ann Lee")) == 1
    assert await size(**by("email", "ann@example.com")) == 1
    assert await size(**by("phone_formatted", "(303) 555-0102")) == 1
    assert await size(**by("city", "Denver")) == 1
    assert await size(**by("priority", 5)) == 1
    assert await size(**by("priority", "0")) == 1
    assert await size(**by("priority", 0)) == 1
    assert await size(**by("salesforce_object_type", "Lead")) == 1
    assert await size(**by("opted_out", "true")) == 1
    # Custom variables, wherever the contact keeps them.
    assert await size(**by("plan", "gold")) == 1
    assert await size(**by("loyalty", "gold")) == 1
    assert await size(**by("plan", "platinum")) == 0
    # Rails-style keys from a form and from a query string.
    assert await size(via="form", **by("plan", "silver")) == 1
    assert await size(via="query", via_tags="vip", **by("email", "ann@example.com")) == 2
    # The union of every way at once.
    assert await size(via_tags="VIP", via_contact_ids=bob, **by("plan", "silver")) == 3
    assert await size() == 0


async def test_what_a_draft_refuses(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    theirs = await new_workspace(db, "Other Dental", "+15550003333")
    [their_contact] = await _contacts(db, theirs.id, {"phone": "+13035550101"})
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"message": "x" * 1601}, "message"),
        ({}, "message"),
        ({"message": "Hi", "via_contact_ids": their_contact}, "via_contact_ids"),
        ({"message": "Hi", "via_phone_numbers": "12,not a phone"}, "via_phone_numbers"),
        ({"message": "Hi", "media_url": "ftp://files.example/a.jpg"}, "media_url"),
        ({"message": "Hi", "via_field[field]": "opted_out", "via_field[value]": "maybe"}, None),
    ]
    for params, field in cases:
        status, body = await inbox(service, ws, "POST", "/v1/broadcasts", **params)
        assert status == 422, (params, body)
        assert body["status"] == 422
        if field:
            assert field in str(body["error"]), body
    assert await _sql(db, "SELECT id FROM broadcasts") == []


# --- Publishing and sending ---------------------------------------------------------------------


async def test_published_now_each_is_texted_once_and_the_unreachable_are_skipped(
    make_service: ServiceFactory,
    db: Database,
    twilio: TwilioStub,
    callbacks: tuple[str, list[dict[str, Any]]],
) -> None:
    callback_url, received = callbacks
    service = await make_service(broadcast_per_second=FAST)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    ann, bob, *_ = await _contacts(
        db,
        ws.id,
        {"phone": "+13035550101", "first_name": "Ann", "tags": ["spring"]},
        {"phone": "+13035550102", "tags": ["spring"], "custom_fields": {"pet": "Rex"}},
        {"phone": "+13035550103", "tags": ["spring"], "opted_out": True},
        {"phone": "+13035550104", "tags": ["spring"], "blocked": True},
        {"phone": "+13035550105", "tags": ["spring"], "profile": {"landline": True}},
    )
    created = await _create(
        service,
        ws,
        message="Hi $first_name, is $pet due a visit? $20 off this week!",
        via_tags="spring",
        status_callback=callback_url,
    )

    published = await _publish(service, ws, created["id"])
    assert published["audience"] == 5
    done = await _until_completed(service, ws, created["id"])

    await _sent(service, db, created["id"], 2)
    assert [m["Body"] for m in _to(twilio, "+13035550101")] == [
        "Hi Ann, is due a visit? $20 off this week!"
    ]
    assert [m["Body"] for m in _to(twilio, "+13035550102")] == [
        "Hi, is Rex due a visit? $20 off this week!"
    ]
    assert len(twilio.messages) == 2
    assert done["sms_errors"] == {
        "contact_opted_out": 1,
        "contact_blocked": 1,
        "contact_landline": 1,
    }
    # Each text is a message in the contact's thread, reporting to the broadcast's callback.
    rows = await _sql(
        db,
        "SELECT r.contact_id, r.status, m.status_callback, m.message_type, c.contact_id "
        "FROM broadcast_recipients r JOIN messages m ON m.id = r.message_id "
        "JOIN conversations c ON c.id = r.conversation_id WHERE r.broadcast_id = :b",
        b=created["id"],
    )
    assert sorted(row[0] for row in rows) == sorted([ann, bob])
    for contact_id, status, callback, message_type, thread_contact in rows:
        assert (status, callback, message_type) == ("queued", callback_url, "transactional")
        assert thread_contact == contact_id

    counted = await _fetch(service, ws, created["id"])
    assert (counted["attempted"], counted["delivered"], counted["undelivered"]) == (2, 0, 0)
    await _status_callback(service, twilio, "+13035550101", "delivered")
    await _status_callback(service, twilio, "+13035550102", "undelivered", "30003")
    counted = await _fetch(service, ws, created["id"])
    assert (counted["attempted"], counted["delivered"], counted["undelivered"]) == (2, 1, 1)
    assert counted["sms_errors"]["30003"] == 1
    assert counted["mms_errors"] == {}
    # Every status of the broadcast's texts reached the callback: sent, then the outcome.

    async def reported() -> bool:
        return len(received) >= 4

    await wait_until(reported, what="the status callbacks")
    statuses = sorted(str(body.get("status")) for body in received)
    assert statuses == ["delivered", "sent", "sent", "undelivered"], received

    # Published once: publishing again, or changing it, is refused.
    for path in (f"/v1/broadcasts/{created['id']}/publish", f"/v1/broadcasts/{created['id']}"):
        status, body = await inbox(service, ws, "POST", path, message="Again")
        assert status == 409, body
        assert body["error"]["code"] == "broadcast_published"
    await asyncio.sleep(0.2)
    assert len(twilio.messages) == 2


async def test_published_for_later_it_waits_then_goes(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(broadcast_per_second=FAST)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await _contacts(db, ws.id, {"phone": "+13035550101", "tags": ["later"]})
    created = await _create(service, ws, message="See you soon", via_tags="later")
    at = time.time() + 2.0

    published = await _publish(service, ws, created["id"], scheduled_for=at)
    assert published["status"] == "scheduled"
    assert abs(published["scheduled_for"] - at) < 0.01
    assert published["audience"] == 1
    await asyncio.sleep(1.0)
    assert twilio.messages == []
    assert (await _fetch(service, ws, created["id"]))["status"] == "scheduled"

    await twilio.wait_for_messages(1, timeout=5)
    assert time.time() >= at
    done = await _until_completed(service, ws, created["id"])
    assert done["completed_at"] >= at


async def test_a_number_sends_at_its_pace_across_broadcasts(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    rate = 5.0
    service = await make_service(broadcast_per_second=rate)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await _contacts(
        db,
        ws.id,
        *({"phone": f"+1303555{n:04d}", "tags": ["a" if n < 6 else "b"]} for n in range(10)),
    )
    first = await _create(service, ws, message="A", via_tags="a")
    second = await _create(service, ws, message="B", via_tags="b")

    arrivals: list[float] = []

    async def watch() -> None:
        while len(arrivals) < 10:
            arrivals.extend([time.monotonic()] * (len(twilio.messages) - len(arrivals)))
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    await _publish(service, ws, first["id"])
    await _publish(service, ws, second["id"])
    await asyncio.wait_for(watching, timeout=15)

    span = arrivals[-1] - arrivals[0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Ten texts from one number at five a second: nine gaps of 0.2 s, whichever broadcast.
    assert 9 / rate * 0.8 <= span <= 9 / rate * 2, arrivals
    assert min(gaps) >= 0.4 / rate, gaps
    assert [m["Body"] for m in twilio.messages] == ["A"] * 6 + ["B"] * 4
    await _until_completed(service, ws, second["id"])


async def test_a_restart_mid_broadcast_sends_the_rest_once(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(broadcast_per_second=2.0)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    phones = [f"+1303555{n:04d}" for n in range(10)]
    await _contacts(db, ws.id, *({"phone": p, "tags": ["all"]} for p in phones))
    created = await _create(service, ws, message="Office news", via_tags="all")
    await _publish(service, ws, created["id"])
    await twilio.wait_for_messages(2)

    await service.stop()
    before = len(twilio.messages)
    assert before < len(phones)

    again = await make_service(broadcast_per_second=2.0)
    done = await _until_completed(again, ws, created["id"], within=20)
    await twilio.wait_for_messages(len(phones), timeout=10)
    await asyncio.sleep(0.6)
    assert sorted(m["To"] for m in twilio.messages) == phones
    assert done["audience"] == len(phones)


async def test_quiet_hours_hold_a_recipient_until_their_morning(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    # A window that is closed now in Los Angeles (the area code of the recipient's number).
    hour = datetime.now(ZoneInfo("America/Los_Angeles")).hour
    window = f"{hour + 2:02d}:00-{hour + 3:02d}:00" if hour <= 20 else "01:00-02:00"
    service = await make_service(broadcast_per_second=FAST, send_window=window)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await _contacts(db, ws.id, {"phone": "+13105550101", "tags": ["west"]})
    created = await _create(service, ws, message="Good morning!", via_tags="west")
    await _publish(service, ws, created["id"])

    async def held() -> bool:
        rows = await _sql(
            db, "SELECT status FROM broadcast_recipients WHERE broadcast_id = :b", b=created["id"]
        )
        return [row[0] for row in rows] == ["held"]

    await wait_until(held, what="the recipient held")
    await asyncio.sleep(0.3)
    assert twilio.messages == []
    counted = await _fetch(service, ws, created["id"])
    assert (counted["status"], counted["attempted"], counted["audience"]) == ("sending", 0, 1)
    # The number's broadcast job waits for the window to open there (a run that failed on the
    # way, e.g. a busy database, is retried and comes to the same wait).
    opens = int(window[:2])

    async def waits_for_the_window() -> bool:
        found = await _sql(
            db,
            "SELECT run_at FROM jobs WHERE key = :k AND status = 'queued'",
            k=f"broadcast:{NUMBER}",
        )
        if len(found) != 1:
            return False
        local = _aware(found[0][0]).astimezone(ZoneInfo("America/Los_Angeles"))
        return (local.hour, local.minute) == (opens, 0) and _aware(found[0][0]) > utcnow()

    await wait_until(waits_for_the_window, what="the job due when the window opens")


def _aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_marketing_goes_only_to_those_who_consented(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(broadcast_per_second=FAST)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await _contacts(
        db,
        ws.id,
        {
            "phone": "+13035550101",
            "tags": ["promo"],
            "marketing_consent_at": utcnow() - timedelta(days=3),
        },
        {"phone": "+13035550102", "tags": ["promo"]},
    )
    created = await _create(
        service, ws, message="Whitening 20% off", via_tags="promo", message_type="marketing"
    )
    await _publish(service, ws, created["id"])
    done = await _until_completed(service, ws, created["id"])
    await twilio.wait_for_messages(1)
    assert [m["To"] for m in twilio.messages] == ["+13035550101"]
    assert done["sms_errors"] == {"marketing_consent_missing": 1}
    [(message_type,)] = await _sql(db, "SELECT message_type FROM messages")
    assert message_type == "marketing"


# --- Replies ------------------------------------------------------------------------------------


async def test_a_reply_is_answered_by_the_agent_and_counted(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    service = await make_service(broadcast_per_second=FAST)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await _contacts(
        db,
        ws.id,
        {"phone": "+13035550101", "first_name": "Ann", "tags": ["all"]},
        {"phone": "+13035550102", "tags": ["all"]},
        {"phone": "+13035550103", "tags": ["all"]},
    )
    created = await _create(
        service, ws, message="Hi $first_name, we now open Saturdays!", via_tags="all"
    )
    await _publish(service, ws, created["id"])
    await _until_completed(service, ws, created["id"])
    await _sent(service, db, created["id"], 3)

    llm.script(reply("Yes, Saturdays from 9 to 1. Want me to book you in?"))
    status, _, _ = await text_in(
        service, sid="SM" + "a" * 32, sender="+13035550101", to=NUMBER, body="Until when?"
    )
    assert status == 200
    await twilio.wait_for_messages(4)
    [answer] = _to(twilio, "+13035550101")[1:]
    assert answer["Body"] == "Yes, Saturdays from 9 to 1. Want me to book you in?"
    # The agent saw the broadcast's text in the thread it answered in.
    assert "we now open Saturdays" in str(llm.requests[0]["messages"])

    status, _, _ = await text_in(
        service, sid="SM" + "b" * 32, sender="+13035550102", to=NUMBER, body="STOP"
    )
    assert status == 200

    async def counted() -> bool:
        broadcast = await _fetch(service, ws, created["id"])
        return (broadcast["responded"], broadcast["replied_stop"]) == (2, 1)

    await wait_until(counted, what="the replies counted")
    assert len(llm.requests) == 1  # STOP is the fast path's
    [(opted_out,)] = await _sql(db, "SELECT opted_out FROM contacts WHERE phone = '+13035550102'")
    assert opted_out


# --- Isolation ----------------------------------------------------------------------------------


async def test_another_inboxs_broadcast_is_404(service: Service, db: Database) -> None:
    mine = await new_workspace(db, "Sunrise Dental", NUMBER)
    theirs = await new_workspace(db, "Other Dental", "+15550003333")
    await _contacts(db, mine.id, {"phone": "+13035550101", "tags": ["all"]})
    created = await _create(service, mine, message="Ours", via_tags="all")
    broadcast_id = created["id"]

    for method, path, params in (
        ("GET", f"/v1/broadcasts/{broadcast_id}", {}),
        ("GET", f"/v1/broadcasts/{broadcast_id}/audience_count", {}),
        ("POST", f"/v1/broadcasts/{broadcast_id}", {"message": "Theirs now"}),
        ("POST", f"/v1/broadcasts/{broadcast_id}/publish", {"asap": 1}),
    ):
        status, body = await inbox(service, theirs, method, path, **params)
        assert status == 404, (path, body)
        assert body["status"] == 404
    status, body = await inbox(service, theirs, "GET", "/v1/broadcasts")
    assert (status, body["data"]["broadcasts"]) == (200, [])
    unchanged = await _fetch(service, mine, broadcast_id)
    assert (unchanged["message"], unchanged["status"]) == ("Ours", "draft")


async def test_a_thousand_contacts_three_opted_out_two_landlines(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    rate = 400.0
    service = await make_service(broadcast_per_second=rate)
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    rows: list[dict[str, Any]] = []
    for n in range(1000):
        row: dict[str, Any] = {"phone": f"+1303556{n:04d}", "tags": ["recall"]}
        if n < 3:
            row["opted_out"] = True
        elif n < 5:
            row["profile"] = {"landline": True}
        rows.append(row)
    await _contacts(db, ws.id, *rows)
    created = await _create(service, ws, message="Time for your cleaning!", via_tags="recall")

    started = time.monotonic()
    published = await _publish(service, ws, created["id"])
    assert published["audience"] == 1000
    done = await _until_completed(service, ws, created["id"], within=90)
    took = time.monotonic() - started
    await _sent(service, db, created["id"], 995)

    assert len(twilio.messages) == 995
    assert len({m["To"] for m in twilio.messages}) == 995
    assert done["sms_errors"] == {"contact_opted_out": 3, "contact_landline": 2}
    assert done["attempted"] == 995
    # The pace held: 995 one-segment texts at `rate` a second take at least 995 / rate.
    assert took >= 995 / rate * 0.9, took

    # A reply opens an agent turn and counts as responded.
    llm.script(reply("Great! What day works for you?"))
    await text_in(service, sid="SMrecall1", sender="+13035560500", to=NUMBER, body="Yes please")
    await llm.wait_for_requests(1, timeout=10)

    async def responded() -> bool:
        return bool((await _fetch(service, ws, created["id"]))["responded"] == 1)

    await wait_until(responded, what="the reply counted")
