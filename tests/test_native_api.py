"""The native `/v1` API beyond the kickoff: listing with filters and cursors, closing and taking
over threads, messages (now, later, canceled), templates, consent and quiet hours."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply
from storage.engine import create_engine
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, Database, Service, count_rows, wait_until
from tests.workspaces import text_in


async def _tag(db: Database, contact_id: str, tag: str) -> None:
    """Tag a contact as the agent's tool stores it (one write: this engine is a second writer
    next to the running service's, and SQLite refuses a read that turns into a write then)."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE contacts SET tags = :tags WHERE id = :id"),
                {"tags": json.dumps([tag]), "id": contact_id},
            )
    finally:
        await engine.dispose()


async def _kick(service: Service, phone: str, **extra: Any) -> dict[str, Any]:
    status, body = await service.kickoff(to=phone, **extra)
    assert status == 201, body
    return dict(body)


async def test_list_filters_and_cursor(service: Service, db: Database, twilio: TwilioStub) -> None:
    phones = [f"+1310555{n:04d}" for n in range(5)]
    started = [await _kick(service, p) for p in phones]
    await twilio.wait_for_messages(5)

    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/conversations?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page, _ = await service.request("GET", path)
        assert status == 200, page
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [s["conversation_id"] for s in reversed(started)]

    status, page, _ = await service.request("GET", "/v1/conversations?phone=(310)%20555-0003")
    assert [c["contact_phone"] for c in page["data"]] == ["+13105550003"]
    await service.request(
        "PATCH", f"/v1/conversations/{started[0]['conversation_id']}", json={"status": "closed"}
    )
    _, page, _ = await service.request("GET", "/v1/conversations?status=closed")
    assert [c["id"] for c in page["data"]] == [started[0]["conversation_id"]]
    _, page, _ = await service.request("GET", "/v1/conversations?status=open&mode=agent")
    assert len(page["data"]) == 4
    # Tags: the one tagged 50%_off (LIKE's wildcards are taken literally), not the others.
    thread = await service.conversation(started[2]["conversation_id"])
    await _tag(db, thread["contact"]["id"], "50%_off")
    await _tag(
        db, (await service.conversation(started[3]["conversation_id"]))["contact"]["id"], "50"
    )
    _, page, _ = await service.request("GET", "/v1/conversations?tag=50%25_off")
    assert [c["id"] for c in page["data"]] == [started[2]["conversation_id"]]
    _, page, _ = await service.request("GET", "/v1/conversations?tag=5")
    assert page["data"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    _, page, _ = await service.request(
        "GET", f"/v1/conversations?updated_since={future.replace('+', '%2B')}"
    )
    assert page["data"] == []
    for bad in ("status=nope", "cursor=zzz", "updated_since=yesterday", "limit=0", "phone=12"):
        status, body, _ = await service.request("GET", f"/v1/conversations?{bad}")
        assert status == 422, (bad, body)
        assert body["error"]["code"] == "validation_error"


async def test_take_over_reply_and_hand_back(
    service: Service, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    started = await _kick(service, PATIENT)
    conversation = f"/v1/conversations/{started['conversation_id']}"
    status, sent, _ = await service.request(
        "POST", f"{conversation}/messages", json={"message": "This is Dana at the front desk."}
    )
    assert status == 201, sent
    await twilio.wait_for_messages(2)
    assert twilio.messages[1]["Body"] == "This is Dana at the front desk."
    thread = await service.conversation(started["conversation_id"])
    assert thread["mode"] == "human"
    assert thread["messages"][-1]["author"] == "human"

    # In human mode the agent says nothing.
    await text_in(service, sid="SMh1", sender=PATIENT, to=FROM_NUMBER, body="Can I come at 4?")
    await asyncio.sleep(0.5)
    assert llm.requests == []
    assert len(twilio.messages) == 2

    status, state, _ = await service.request("PATCH", conversation, json={"mode": "agent"})
    assert status == 200, state
    assert state == {
        "id": started["conversation_id"],
        "status": "open",
        "mode": "agent",
        "handoff_reason": None,
    }
    llm.script(reply("Let me check 4pm for you."))
    await text_in(service, sid="SMh2", sender=PATIENT, to=FROM_NUMBER, body="Hello?")
    await twilio.wait_for_messages(3)

    for bad in ({}, {"status": "archived"}, {"mode": "robot"}):
        status, body, _ = await service.request("PATCH", conversation, json=bad)
        assert status == 422, (bad, body)
    status, _, _ = await service.request("PATCH", conversation, json={"status": "closed"})
    assert status == 200
    newer = await _kick(service, PATIENT)
    status, body, _ = await service.request("PATCH", conversation, json={"status": "open"})
    assert status == 409
    assert body["error"]["code"] == "another_thread_live"
    assert newer["conversation_id"] in body["error"]["message"]


async def test_messages_now_later_and_canceled(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    status, now, _ = await service.request(
        "POST", "/v1/messages", json={"to": "(310) 555-1234", "message": "Your crown is ready."}
    )
    assert status == 201, now
    assert now["status"] == "queued"
    await twilio.wait_for_messages(1)
    status, later, _ = await service.request(
        "POST",
        "/v1/messages",
        json={"to": PATIENT, "message": "See you tomorrow!", "send_at": "2031-05-01T15:00:00Z"},
    )
    assert status == 201, later
    # A second text to the same phone continues the thread.
    assert later["conversation_id"] == now["conversation_id"]
    assert (later["status"], later["send_at"]) == ("scheduled", "2031-05-01T15:00:00Z")

    status, detail, _ = await service.request("GET", f"/v1/messages/{later['message_id']}")
    assert status == 200
    assert (detail["status"], detail["to_number"]) == ("scheduled", PATIENT)
    status, canceled, _ = await service.request("DELETE", f"/v1/messages/{later['message_id']}")
    assert status == 200, canceled
    assert canceled["status"] == "canceled"
    status, again, _ = await service.request("DELETE", f"/v1/messages/{later['message_id']}")
    assert status == 409
    assert again["error"]["code"] == "message_not_scheduled"
    status, _, _ = await service.request("DELETE", f"/v1/messages/{now['message_id']}")
    assert status == 409
    status, _, _ = await service.request("GET", "/v1/messages/msg_nope")
    assert status == 404

    # One due in a moment goes out by itself.
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, due, _ = await service.request(
        "POST", "/v1/messages", json={"to": PATIENT, "message": "Due soon", "send_at": soon}
    )
    assert status == 201, due
    await twilio.wait_for_messages(2, timeout=10)
    assert twilio.messages[1]["Body"] == "Due soon"
    assert len(twilio.messages) == 2


async def test_templates_crud_and_sending_with_one(service: Service, twilio: TwilioStub) -> None:
    status, listed, _ = await service.request("GET", "/v1/templates")
    assert status == 200
    assert {"tmpl_appt_confirm", "tmpl_otw", "tmpl_complete"} <= {t["id"] for t in listed["data"]}
    status, made, _ = await service.request(
        "POST",
        "/v1/templates",
        json={"id": "recall", "name": "Recall", "body": "Hi {first_name}, time for your {kind}!"},
    )
    assert status == 201, made
    assert made["variables"] == ["first_name", "kind"]
    status, _, _ = await service.request(
        "POST", "/v1/templates", json={"id": "recall", "body": "dup"}
    )
    assert status == 409
    status, changed, _ = await service.request(
        "PUT", "/v1/templates/recall", json={"body": "Hi {first_name}! Your {kind} is due."}
    )
    assert status == 200
    assert changed["body"].endswith("is due.")

    status, body = await service.kickoff(
        message=None,
        template="recall",
        variables={"kind": "cleaning"},
        contact={"first_name": "Sarah"},
    )
    assert status == 201, body
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["Body"] == "Hi Sarah! Your cleaning is due."

    status, body = await service.kickoff(message=None, template="recall", variables={})
    assert status == 422
    assert body["error"]["message"] == "missing template variables: first_name, kind"
    status, body = await service.kickoff(template="recall")
    assert status == 422  # both message and template
    status, body = await service.kickoff(message=None, template="nope")
    assert status == 404

    status, _, _ = await service.request("DELETE", "/v1/templates/recall")
    assert status == 204
    status, _, _ = await service.request("GET", "/v1/templates/recall")
    assert status == 404


async def test_marketing_needs_consent(service: Service, db: Database) -> None:
    status, body = await service.kickoff(message_type="marketing")
    assert status == 409
    assert body["error"]["code"] == "marketing_consent_missing"
    assert body["error"]["details"][0]["field"] == "contact.marketing_consent"
    assert await count_rows(db, "messages") == 0
    status, body = await service.kickoff(
        message_type="marketing", contact={"marketing_consent": True}
    )
    assert status == 201, body


def _zone_at_night() -> tuple[str, datetime]:
    """A zone where it is now between 22:00 and 22:59, and its next 08:00 (UTC)."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        zone = f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
        local = now.astimezone(ZoneInfo(zone))
        # Crossing midnight before the kickoff changes nothing: the opening is the same 08:00.
        if local.hour == 22:
            opening = (local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
            return zone, opening.astimezone(UTC)
    raise AssertionError("some whole-hour zone is always between 22:00 and 22:59")


async def test_quiet_hours_hold_a_kickoff_until_morning(
    make_service: Any, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(send_window="08:00-20:00")
    zone, opening = _zone_at_night()
    status, body = await service.kickoff(contact={"timezone": zone})
    assert status == 201, body
    assert body["status"] == "scheduled"
    assert datetime.fromisoformat(body["send_at"].replace("Z", "+00:00")) == opening
    await asyncio.sleep(0.3)
    assert twilio.messages == []

    status, canceled, _ = await service.request("DELETE", f"/v1/messages/{body['message_id']}")
    assert status == 200
    assert canceled["status"] == "canceled"
    thread = await service.conversation(body["conversation_id"])
    assert [e["type"] for e in thread["events"]][-2:] == ["message.scheduled", "message.canceled"]

    # An alert goes at any hour.
    status, body = await service.kickoff(contact={"timezone": zone}, message_type="alert")
    assert status == 201
    assert body["status"] == "queued"
    await twilio.wait_for_messages(1)


async def test_concurrent_sends_with_one_key_send_once(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    request = {"to": PATIENT, "message": "Your results are in."}

    async def post() -> tuple[int, Any, Any]:
        return await service.request(
            "POST", "/v1/messages", json=request, headers={"Idempotency-Key": "results-1"}
        )

    answers = await asyncio.gather(*(post() for _ in range(2)))
    statuses = sorted(a[0] for a in answers)
    assert statuses in ([201, 201], [201, 409])
    await twilio.wait_for_messages(1)
    replay = await post()
    assert replay[0] == 201
    assert replay[2]["Idempotent-Replayed"] == "true"
    assert await count_rows(db, "messages") == 1

    async def settled() -> bool:
        return await count_rows(db, "messages") == 1 and len(twilio.messages) == 1

    await wait_until(settled, what="one message, one send")


async def test_a_nul_character_is_refused_by_name(service: Service, db: Database) -> None:
    status, body = await service.kickoff(message="hi\u0000", contact={"first_name": "A"})
    assert status == 422
    assert body["error"]["details"] == [
        {"field": "message", "message": "must not contain the NUL character (\\u0000)"}
    ]
    status, body = await service.kickoff(contact={"custom_fields": {"note": "x\u0000"}})
    assert status == 422
    assert body["error"]["details"][0]["field"] == "contact.custom_fields.note"
    assert await count_rows(db, "conversations") == 0
