"""Telnyx end to end: its documented webhooks, signed with ed25519, through the real app; refused
ones quarantined whole; sends (SMS, MMS, retries, STOP blocks) against a loopback stub."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from storage import quarantine
from storage.engine import create_engine, create_session_factory
from storage.models import QuarantinedWebhook
from tests.conftest import ServiceFactory
from tests.fakes.handset import Handset
from tests.fakes.telnyx_server import TelnyxStub, public_key_of, sign, signed_headers
from tests.harness import FROM_NUMBER, PATIENT, PUBLIC_URL, Database, Service, wait_until
from tests.test_kickoff import KICKOFF
from webhooks.carriers import Delivery
from webhooks.keys import DEPS
from webhooks.registry import carriers

HOOK = "/webhooks/telnyx"
MEDIA = [
    "https://media.telnyx.example/4d7b0f3e/IMG_0412.jpg",
    "https://media.telnyx.example/4d7b0f3e/IMG_0413.png",
    "https://media.telnyx.example/4d7b0f3e/voice-note.amr",
]


def documented_inbound(*, attempt: int = 1) -> dict[str, Any]:
    """The `message.received` example of Telnyx's API reference (inboundMessage), as an MMS
    with three media items, to our number from the patient."""
    return {
        "data": {
            "record_type": "event",
            "id": "bf6307bd-884d-4c1f-b6ea-c62b8c495d3c",
            "event_type": "message.received",
            "occurred_at": "2019-01-23T18:10:02.574Z",
            "payload": {
                "record_type": "message",
                "direction": "inbound",
                "id": "7ee4241c-f127-47e5-9c34-3aac291f8058",
                "type": "MMS",
                "messaging_profile_id": "0f512bda-ae1e-4597-8e11-e5f5686b97d3",
                "organization_id": "b448f9cc-a842-4784-98e9-03c1a5872950",
                "from": {
                    "phone_number": PATIENT,
                    "carrier": "T-MOBILE USA, INC.",
                    "line_type": "Wireless",
                },
                "to": [
                    {
                        "phone_number": FROM_NUMBER,
                        "status": "webhook_delivered",
                        "carrier": "TELNYX LLC",
                        "line_type": "VoIP",
                    }
                ],
                "cc": [],
                "text": "Hello, World!",
                "subject": "From Telnyx!",
                "media": [
                    {
                        "url": MEDIA[0],
                        "content_type": "image/jpeg",
                        "hash_sha256": "a" * 64,
                        "size": 48213,
                    },
                    {
                        "url": MEDIA[1],
                        "content_type": "image/png",
                        "hash_sha256": "b" * 64,
                        "size": 10482,
                    },
                    {
                        "url": MEDIA[2],
                        "content_type": "audio/amr",
                        "hash_sha256": "c" * 64,
                        "size": 6120,
                    },
                ],
                "webhook_url": "https://www.example.com/hooks",
                "webhook_failover_url": "https://backup.example.com/hooks",
                "encoding": "GSM-7",
                "parts": 1,
                "tags": ["Greetings"],
                "cost": {"amount": "0.0051", "currency": "USD"},
                "received_at": "2019-01-23T18:10:02.574Z",
                "sent_at": None,
                "completed_at": None,
                "valid_until": None,
                "errors": [],
            },
        },
        "meta": {"attempt": attempt, "delivered_to": f"{PUBLIC_URL}{HOOK}"},
    }


def documented_finalized(message_id: str, text: str) -> dict[str, Any]:
    """The `message.finalized` example of Telnyx's "Receiving Webhooks" guide (a delivery
    receipt from a T-Mobile handset), for a message we sent."""
    return {
        "data": {
            "event_type": "message.finalized",
            "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
            "occurred_at": "2019-12-09T21:32:14.148+00:00",
            "payload": {
                "completed_at": "2019-12-09T21:32:14.148+00:00",
                "cost": {"amount": "0.0051", "currency": "USD"},
                "direction": "outbound",
                "encoding": "GSM-7",
                "errors": [],
                "from": {"carrier": "Telnyx", "line_type": "VoIP", "phone_number": FROM_NUMBER},
                "id": message_id,
                "media": [],
                "messaging_profile_id": "83d2f2e8-7b3a-4e91-9c1c-5cd4b9ad1c34",
                "organization_id": "b448f9cc-a842-4784-98e9-03c1a5872950",
                "parts": 1,
                "received_at": "2019-12-09T21:32:13.553+00:00",
                "record_type": "message",
                "sent_at": "2019-12-09T21:32:13.796+00:00",
                "tags": [],
                "text": text,
                "to": [
                    {
                        "carrier": "T-MOBILE USA, INC.",
                        "line_type": "Wireless",
                        "phone_number": PATIENT,
                        "status": "delivered",
                    }
                ],
                "type": "SMS",
                "valid_until": "2019-12-09T22:32:13.553+00:00",
                "webhook_failover_url": None,
                "webhook_url": f"{PUBLIC_URL}{HOOK}",
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": f"{PUBLIC_URL}{HOOK}"},
    }


@pytest.fixture
async def telnyx() -> AsyncIterator[TelnyxStub]:
    async with TelnyxStub() as stub:
        yield stub


@pytest.fixture
async def service(make_service: ServiceFactory, telnyx: TelnyxStub) -> Service:
    return await make_service(**telnyx.settings())


def _raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


async def _post(
    service: Service, body: bytes, headers: dict[str, str], path: str = HOOK
) -> tuple[int, Any]:
    assert service.http is not None
    async with service.http.post(service.url(path), data=body, headers=headers) as response:
        answer = await response.json(content_type=None)
        return response.status, answer


async def _threads(service: Service) -> list[Any]:
    status, body, _ = await service.request("GET", "/v1/conversations")
    assert status == 200, body
    return [await service.conversation(item["id"]) for item in body["data"]]


async def _message(service: Service, message_id: str) -> Any:
    status, body, _ = await service.request("GET", f"/v1/messages/{message_id}")
    assert status == 200, body
    return body


async def _status_is(service: Service, message_id: str, status: str) -> None:
    async def reached() -> bool:
        return bool((await _message(service, message_id))["status"] == status)

    await wait_until(reached, what=f"message {message_id} to be {status}")


async def _quarantined(db: Database) -> list[QuarantinedWebhook]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with create_session_factory(engine)() as session:
            return await quarantine.listed(session=session, provider="telnyx", limit=100)
    finally:
        await engine.dispose()


async def test_documented_inbound_mms_is_stored_once_with_its_media(
    service: Service, telnyx: TelnyxStub, db: Database
) -> None:
    body = _raw(documented_inbound())
    status, answer = await _post(service, body, signed_headers(body, telnyx.signing_key))
    assert status == 200, answer
    assert answer == {"status": "accepted", "id": "7ee4241c-f127-47e5-9c34-3aac291f8058"}

    # Telnyx delivers again when unsure we got it (a new attempt, signed anew): nothing doubles.
    again = _raw(documented_inbound(attempt=2))
    status, answer = await _post(service, again, signed_headers(again, telnyx.signing_key))
    assert status == 200, answer
    assert answer["status"] == "duplicate"

    [thread] = await _threads(service)
    assert thread["contact"]["phone"] == PATIENT
    inbound = [m for m in thread["messages"] if m["direction"] == "inbound"]
    assert len(inbound) == 1
    assert inbound[0]["body"] == "Hello, World!"
    assert inbound[0]["media_urls"] == MEDIA
    # The agent answered through Telnyx, from the number the text came to.
    [reply] = await telnyx.sent(1)
    assert (reply.to, reply.sender) == (PATIENT, FROM_NUMBER)
    assert await _quarantined(db) == []


async def test_a_reply_goes_out_as_documented_and_its_statuses_come_back(
    service: Service, telnyx: TelnyxStub
) -> None:
    status, started = await service.kickoff(**KICKOFF)
    assert status == 201, started
    [sms] = await telnyx.sent(1)
    request = telnyx.requests[0]
    assert request["authorization"] == f"Bearer {telnyx.api_key}"
    assert request["content_type"] == "application/json"
    assert request["json"] == {
        "from": FROM_NUMBER,
        "to": PATIENT,
        "text": KICKOFF["message"],
        "webhook_url": f"{PUBLIC_URL}{HOOK}?message_id={started['message_id']}",
    }
    message_id = started["message_id"]
    await _status_is(service, message_id, "sent")
    assert (await _message(service, message_id))["sent_at"] is not None

    # message.sent on the message's own webhook URL; then the documented message.finalized on
    # the profile's URL, matched by Telnyx's id alone.
    assert await telnyx.report(service.url("/"), sms, "sent") == 200
    finalized = _raw(documented_finalized(sms.provider_id, sms.body))
    status, answer = await _post(service, finalized, signed_headers(finalized, telnyx.signing_key))
    assert status == 200, answer
    assert answer == {"status": "recorded", "id": sms.provider_id}
    delivered = await _message(service, message_id)
    assert delivered["status"] == "delivered"
    assert delivered["delivered_at"] is not None
    assert delivered["error_code"] is None
    # A late or repeated status never moves it back.
    assert await telnyx.report(service.url("/"), sms, "sent") == 200
    assert (await _message(service, message_id))["status"] == "delivered"


async def test_a_failed_delivery_keeps_telnyxs_error_code(
    service: Service, telnyx: TelnyxStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    [sms] = await telnyx.sent(1)
    await _status_is(service, started["message_id"], "sent")

    assert await telnyx.report(service.url("/"), sms, "failed") == 200

    message = await _message(service, started["message_id"])
    assert message["status"] == "failed"
    assert message["error_code"] == "40008"


async def test_other_events_are_acknowledged_and_bad_ones_answered_4xx(
    service: Service, telnyx: TelnyxStub, db: Database
) -> None:
    key = telnyx.signing_key
    other = _raw(
        {
            "data": {
                "record_type": "event",
                "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
                "event_type": "number_order.complete",
                "occurred_at": "2024-01-01T00:00:00Z",
                "payload": {"id": "12ade33a-21c0-473b-b055-b3c836e1c292"},
            }
        }
    )
    status, answer = await _post(service, other, signed_headers(other, key))
    assert (status, answer) == (200, {"status": "ignored", "event_type": "number_order.complete"})

    cases = {
        b"{not json": (400, "invalid_json"),
        _raw({"meta": {}}): (422, "missing_fields"),
        _raw({"data": {"event_type": "message.received"}}): (422, "missing_fields"),
    }
    no_id = documented_inbound()
    del no_id["data"]["payload"]["id"]
    cases[_raw(no_id)] = (422, "missing_fields")
    no_sender = documented_inbound()
    no_sender["data"]["payload"]["from"] = {"carrier": "T-MOBILE USA, INC."}
    cases[_raw(no_sender)] = (400, "missing_fields")
    bad_sender = documented_inbound()
    bad_sender["data"]["payload"]["from"]["phone_number"] = "not a phone"
    cases[_raw(bad_sender)] = (400, "invalid_phone")
    for body, (expected, code) in cases.items():
        status, answer = await _post(service, body, signed_headers(body, key))
        assert status == expected, (body, answer)
        assert answer["error"]["code"] == code, (body, answer)
        assert set(answer["error"]) == {"code", "message", "details"}

    # Genuine but bad content is the sender's problem, not a signature's: never quarantined.
    assert await _quarantined(db) == []
    assert await _threads(service) == []


async def test_forged_stale_or_unsigned_webhooks_are_refused_and_kept(
    service: Service, telnyx: TelnyxStub, db: Database
) -> None:
    body = _raw(documented_inbound())
    now = int(time.time())
    good = sign(body, telnyx.signing_key, now)
    stranger = SigningKey.generate()
    altered = body.replace(b"Hello, World!", b"Send me the codes")
    cases: dict[str, tuple[bytes, dict[str, str], str]] = {
        "altered body": (altered, signed_headers(body, telnyx.signing_key, now), "does not match"),
        "stale": (body, signed_headers(body, telnyx.signing_key, now - 360), "older than"),
        "far future": (body, signed_headers(body, telnyx.signing_key, now + 360), "ahead of"),
        "truncated signature": (
            body,
            {"telnyx-signature-ed25519": good[:-8], "telnyx-timestamp": str(now)},
            "not an ed25519 signature",
        ),
        "not base64": (
            body,
            {"telnyx-signature-ed25519": good[:-1] + "!", "telnyx-timestamp": str(now)},
            "not base64",
        ),
        "no headers": (body, {"Content-Type": "application/json"}, "no telnyx-signature-ed25519"),
        "no timestamp": (body, {"telnyx-signature-ed25519": good}, "no telnyx-timestamp"),
        "timestamp not an integer": (
            body,
            {"telnyx-signature-ed25519": good, "telnyx-timestamp": f"{now}.5"},
            "not unix seconds",
        ),
        "another key": (body, signed_headers(body, stranger, now), "does not match"),
    }
    kept: dict[str, str] = {}
    for name, (raw, headers, reason) in cases.items():
        status, answer = await _post(service, raw, headers)
        assert status == 403, (name, answer)
        assert answer["error"]["code"] == "invalid_signature", (name, answer)
        assert reason in answer["error"]["message"], (name, answer)
        kept[answer["error"]["details"]["quarantine_id"]] = name

    rows = {row.id: row for row in await _quarantined(db)}
    assert set(rows) == set(kept)
    for row_id, name in kept.items():
        raw, headers, reason = cases[name]
        row = rows[row_id]
        assert reason in row.reason, name
        assert row.body == raw, name
        assert row.method == "POST"
        assert row.path == HOOK
        for header, value in headers.items():
            assert row.headers[header.lower()] == value, name
    # Nothing was processed: no text, no conversation, no reply.
    assert await _threads(service) == []
    await asyncio.sleep(0.2)
    assert telnyx.requests == []


async def test_a_quarantined_webhook_replays_from_when_it_arrived(
    make_service: ServiceFactory, telnyx: TelnyxStub, db: Database
) -> None:
    # The service was given another account's key: Telnyx's genuine webhook is refused, kept.
    wrong = public_key_of(SigningKey.generate())
    service = await make_service(**{**telnyx.settings(), "telnyx_public_key": wrong})
    body = _raw(documented_inbound())
    signed_at = int(time.time())
    status, answer = await _post(service, body, signed_headers(body, telnyx.signing_key, signed_at))
    assert status == 403, answer
    [row] = await _quarantined(db)
    assert "does not match" in row.reason

    # Replayed as `smsagent quarantine replay` does: the kept request, its arrival time.
    carrier = carriers()["telnyx"]
    delivery = Delivery(
        provider=row.provider,
        method=row.method,
        path=row.path,
        headers=row.headers,
        body=row.body,
        received_at=row.received_at,
        remote=row.remote,
    )
    deps = service.server.app[DEPS]
    assert "does not match" in (await carrier.check(deps, delivery) or "")
    unset = dataclasses.replace(
        deps, settings=deps.settings.model_copy(update={"telnyx_public_key": None})
    )
    assert "not configured" in (await carrier.check(unset, delivery) or "")
    fixed = dataclasses.replace(
        deps, settings=deps.settings.model_copy(update={"telnyx_public_key": telnyx.public_key})
    )
    assert await carrier.check(fixed, delivery) is None
    # One that came two hours ago, signed then, still holds today: the window is measured from
    # its arrival, never from the replay.
    arrived = row.received_at - timedelta(hours=2)
    earlier = dataclasses.replace(
        delivery,
        headers=signed_headers(body, telnyx.signing_key, int(arrived.timestamp())),
        received_at=arrived,
    )
    assert await carrier.check(fixed, earlier) is None
    assert "older than" in (
        await carrier.check(fixed, dataclasses.replace(earlier, received_at=row.received_at)) or ""
    )

    response = await carrier.process(fixed, delivery)
    assert response.status == 200
    [thread] = await _threads(service)
    assert [m["body"] for m in thread["messages"] if m["direction"] == "inbound"] == [
        "Hello, World!"
    ]


async def test_mms_media_urls_go_out(service: Service, telnyx: TelnyxStub) -> None:
    picture = "https://cdn.example.test/offices/bright-smiles/parking-map.png"
    status, body, _ = await service.request(
        "POST",
        "/v1/messages",
        json={"to": PATIENT, "message": "Here is where to park.", "media_urls": [picture]},
    )
    assert status == 201, body
    [sms] = await telnyx.sent(1)
    assert sms.media_urls == (picture,)
    assert sms.extra["text"] == "Here is where to park."
    assert sms.extra["webhook_url"].startswith(f"{PUBLIC_URL}{HOOK}?message_id=")
    await _status_is(service, body["message_id"], "sent")


async def test_rate_limits_are_retried(service: Service, telnyx: TelnyxStub) -> None:
    telnyx.fail_next(429, "10011", "Too many requests", retry_after=1)
    _, started = await service.kickoff(**KICKOFF)

    await telnyx.wait_for_messages(1, timeout=10)
    assert [r["status"] for r in telnyx.requests] == [429, 200]
    await _status_is(service, started["message_id"], "sent")


async def test_a_recipient_who_texted_stop_is_marked_opted_out(
    service: Service, telnyx: TelnyxStub
) -> None:
    telnyx.fail_next(
        400,
        "40300",
        "Blocked due to STOP message",
        f"Messages cannot be sent from '{FROM_NUMBER}' to '{PATIENT}' due to an existing "
        "block rule.",
    )
    _, started = await service.kickoff(**KICKOFF)

    await _status_is(service, started["message_id"], "failed")
    await asyncio.sleep(0.3)
    assert len(telnyx.requests) == 1
    thread = await service.conversation(started["conversation_id"])
    assert thread["messages"][0]["error_code"] == "40300"
    assert thread["contact"]["opted_out"] is True
    status, _ = await service.kickoff(**KICKOFF)
    assert status == 409


async def test_stop_is_left_to_the_profiles_auto_response_when_it_answers(
    make_service: ServiceFactory, telnyx: TelnyxStub, db: Database
) -> None:
    service = await make_service(**telnyx.settings(), telnyx_answers_keywords=True)
    _, started = await service.kickoff(**KICKOFF)
    await telnyx.wait_for_messages(1)

    code = await telnyx.text_in(service.url(""), sender=PATIENT, to=FROM_NUMBER, body="STOP")

    assert code == 200

    async def opted_out() -> bool:
        thread = await service.conversation(started["conversation_id"])
        return bool(thread["contact"]["opted_out"])

    await wait_until(opted_out, what="the opt-out recorded")
    await asyncio.sleep(0.5)
    assert len(telnyx.requests) == 1  # the profile's auto-response is the confirmation


async def test_a_refused_send_is_final(service: Service, telnyx: TelnyxStub) -> None:
    telnyx.fail_next(
        400, "40310", "Invalid 'to' address", "The 'to' address should be a single valid number."
    )
    _, started = await service.kickoff(**KICKOFF)

    await _status_is(service, started["message_id"], "failed")
    await asyncio.sleep(0.3)
    assert len(telnyx.requests) == 1
    thread = await service.conversation(started["conversation_id"])
    assert thread["messages"][0]["error_code"] == "40310"
    assert thread["contact"]["opted_out"] is False


async def test_the_stub_refuses_what_telnyx_refuses(telnyx: TelnyxStub) -> None:
    url = f"{telnyx.base_url}/v2/messages"
    auth = {"Authorization": f"Bearer {telnyx.api_key}"}
    good = {"from": FROM_NUMBER, "to": PATIENT, "text": "Hi", "webhook_url": PUBLIC_URL + HOOK}
    cases: list[tuple[dict[str, str], dict[str, Any], int, str]] = [
        ({"Authorization": "Bearer wrong"}, good, 401, "10009"),
        (auth, {**good, "to": "3105551234"}, 400, "40310"),
        (auth, {**good, "from": "555"}, 400, "40305"),
        (auth, {k: v for k, v in good.items() if k != "text"}, 400, "10004"),
        (auth, {**good, "webhook_url": "/webhooks/telnyx"}, 400, "10003"),
        (auth, {**good, "text": None, "media_urls": ["ftp://x"]}, 400, "10003"),
    ]
    async with aiohttp.ClientSession() as http:
        for headers, body, expected, code in cases:
            async with http.post(url, json=body, headers=headers) as response:
                answer = await response.json()
                assert response.status == expected, (body, answer)
                assert answer["errors"][0]["code"] == code, (body, answer)
        async with http.post(url, json=good, headers=auth) as response:
            assert response.status == 200
            data = (await response.json())["data"]
    assert data["to"][0] == {
        "phone_number": PATIENT,
        "status": "queued",
        "carrier": "T-MOBILE USA, INC.",
        "line_type": "Wireless",
    }
    assert [m["id"] for m in telnyx.messages] == [data["id"]]


async def test_the_handset_texts_in_and_reports_as_telnyx(
    service: Service, telnyx: TelnyxStub
) -> None:
    handset: Handset = telnyx
    photo = ("https://media.telnyx.example/9c1e/front-tooth.jpg", "image/jpeg")
    status = await handset.text_in(
        service.url("/"), sender=PATIENT, to=FROM_NUMBER, body="It chipped", media=[photo]
    )
    assert status == 200
    [reply] = await handset.sent(1)
    assert (reply.to, reply.sender, reply.body) == (PATIENT, FROM_NUMBER, "OK")
    assert await handset.report(service.url("/"), reply, "delivered") == 200

    [thread] = await _threads(service)
    inbound, outbound = thread["messages"]
    assert (inbound["body"], inbound["media_urls"]) == ("It chipped", [photo[0]])
    assert outbound["status"] == "delivered"
