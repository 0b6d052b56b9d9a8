"""Avochato as a sender: texts reach its API with the account's credentials and the documented
parameters, with Twilio's retry policy; status callbacks and the message webhook count only
with the token in their URL, anything else is refused and kept in quarantine."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply
from storage.engine import create_engine
from tests.conftest import ServiceFactory
from tests.fakes.avochato_server import AvochatoStub
from tests.harness import (
    FROM_NUMBER,
    PATIENT,
    PUBLIC_URL,
    Database,
    Service,
    count_rows,
    wait_until,
)
from tests.test_kickoff import KICKOFF


@pytest.fixture
async def avochato() -> AsyncIterator[AvochatoStub]:
    async with AvochatoStub() as stub:
        yield stub


@pytest.fixture
async def service(make_service: ServiceFactory, avochato: AvochatoStub) -> Service:
    return await make_service(**avochato.settings())


async def _rows(db: Database, sql: str) -> list[Any]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def _message(service: Service, message_id: str) -> dict[str, Any]:
    status, body, _ = await service.request("GET", f"/v1/messages/{message_id}")
    assert status == 200, body
    return dict(body)


async def _status_is(service: Service, message_id: str, status: str) -> bool:
    return bool((await _message(service, message_id))["status"] == status)


def _token(secret: str, subject: str) -> str:
    return hmac.new(secret.encode(), subject.encode(), hashlib.sha256).hexdigest()


async def _sent(service: Service, avochato: AvochatoStub, **kickoff: Any) -> tuple[str, str]:
    """Kick a text off and wait until Avochato has it and its send is recorded; our id and
    Avochato's."""
    status, started = await service.kickoff(**{**KICKOFF, **kickoff})
    assert status == 201, started
    [sent] = await avochato.sent(1)
    await wait_until(lambda: _status_is(service, started["message_id"], "sent"), what="sent")
    return started["message_id"], sent.provider_id


async def test_sends_reach_avochato_with_its_credentials_and_documented_parameters(
    service: Service, avochato: AvochatoStub, db: Database
) -> None:
    photos = ["https://cdn.example.com/before.jpg", "https://cdn.example.com/after.jpg"]

    message_id, event_id = await _sent(service, avochato, media_urls=photos)

    [request] = avochato.requests
    token = _token(avochato.auth_secret, message_id)
    assert request["status"] == 200
    assert request["params"] == {
        "auth_id": avochato.auth_id,
        "auth_secret": avochato.auth_secret,
        "phone": PATIENT,
        "from": FROM_NUMBER,
        # One media_url per Avochato text: the second picture goes as a link.
        "message": f"{KICKOFF['message']}\n{photos[1]}",
        "media_url": photos[0],
        "status_callback": (
            f"{PUBLIC_URL}/webhooks/avochato/status?message_id={message_id}&token={token}"
        ),
    }
    [(provider, provider_id)] = await _rows(
        db, "SELECT provider, provider_message_id FROM messages WHERE direction = 'outbound'"
    )
    assert (provider, provider_id) == ("avochato", event_id)


async def test_wrong_credentials_are_refused_once_and_not_retried(
    make_service: ServiceFactory, avochato: AvochatoStub
) -> None:
    service = await make_service(
        **{**avochato.settings(), "avochato_auth_secret": "not-the-account-secret-at-all"}
    )
    _, started = await service.kickoff(**KICKOFF)

    await wait_until(lambda: _status_is(service, started["message_id"], "failed"), what="failed")
    await asyncio.sleep(0.3)
    assert [r["status"] for r in avochato.requests] == [401]
    assert (await _message(service, started["message_id"]))["error_code"] == "http_401"


async def test_rate_limits_and_outages_are_retried(
    service: Service, avochato: AvochatoStub
) -> None:
    avochato.fail_next(429, "Rate limit exceeded", retry_after=1)
    avochato.fail_next(502, "Bad Gateway")

    _, started = await service.kickoff(**KICKOFF)

    await avochato.wait_for_messages(1, timeout=20)
    assert [r["status"] for r in avochato.requests] == [429, 502, 200]
    await wait_until(lambda: _status_is(service, started["message_id"], "sent"), what="sent")


async def test_a_refusal_is_final_and_an_opted_out_answer_marks_the_contact(
    service: Service, avochato: AvochatoStub
) -> None:
    avochato.fail_next(400, "+13105551234 is not a valid phone number")
    _, refused = await service.kickoff(**KICKOFF)
    await wait_until(lambda: _status_is(service, refused["message_id"], "failed"), what="failed")

    avochato.fail_next(400, "Contact has opted out of receiving messages")
    _, blocked = await service.kickoff(**{**KICKOFF, "to": "(310) 555-8888"})
    await wait_until(lambda: _status_is(service, blocked["message_id"], "failed"), what="failed")

    await asyncio.sleep(0.3)
    assert [r["status"] for r in avochato.requests] == [400, 400]
    assert (await service.conversation(blocked["conversation_id"]))["contact"]["opted_out"] is True
    assert (await service.conversation(refused["conversation_id"]))["contact"]["opted_out"] is False


async def test_status_callbacks_with_their_token_update_the_text(
    service: Service, avochato: AvochatoStub
) -> None:
    message_id, event_id = await _sent(service, avochato)

    status, answer = await avochato.status_callback(
        service.url(""), event_id, "undelivered", error_code=30003
    )

    assert (status, answer) == (200, {"ok": True, "applied": True})
    message = await _message(service, message_id)
    assert (message["status"], message["error_code"]) == ("undelivered", "30003")


async def test_a_callback_without_its_token_is_refused_and_kept(
    service: Service, avochato: AvochatoStub, db: Database
) -> None:
    message_id, event_id = await _sent(service, avochato)
    bad = f"{PUBLIC_URL}/webhooks/avochato/status?message_id={message_id}&token={'0' * 64}"
    none = f"{PUBLIC_URL}/webhooks/avochato/status?message_id={message_id}"
    # Another text's token does not prove this one.
    other = (
        f"{PUBLIC_URL}/webhooks/avochato/status?message_id={message_id}"
        f"&token={_token(avochato.auth_secret, 'msg_someone_else')}"
    )

    answers = [
        await avochato.status_callback(service.url(""), event_id, "delivered", url=url)
        for url in (bad, none, other)
    ]
    inbound, refused = await avochato.post(
        service.url("/webhooks/avochato/inbound?token=" + "f" * 64),
        {"event_id": "kJ8xQ2mP0a", "direction": "in", "from": PATIENT, "to": FROM_NUMBER},
    )

    for status, answer in [*answers, (inbound, refused)]:
        assert status == 403
        assert answer["error"]["code"] == "invalid_signature"
    reasons = [row.reason for row in await _rows(db, "SELECT reason FROM quarantined_webhooks")]
    assert len(reasons) == 4
    assert sum("token does not match" in reason for reason in reasons) == 3
    assert sum("no token" in reason for reason in reasons) == 1
    assert await _status_is(service, message_id, "sent")
    assert await count_rows(db, "messages") == 1


async def test_texts_come_in_through_the_message_webhook_once(
    service: Service, avochato: AvochatoStub, llm: ScriptedLLM, db: Database
) -> None:
    llm.script(reply("Thanks for the photo! We will take a look."))
    photo = ("https://media.avochato.com/abc123/photo.jpg", "image/jpeg")

    first = await avochato.text_in(
        service.url(""),
        sender=PATIENT,
        to=FROM_NUMBER,
        body="Here it is",
        media=[photo],
        provider_id="43y83xbVNM",
    )
    again = await avochato.text_in(
        service.url(""),
        sender=PATIENT,
        to=FROM_NUMBER,
        body="Here it is",
        media=[photo],
        provider_id="43y83xbVNM",
    )
    # The webhook reports the account's own texts too: those are not customers' texts.
    own, ignored = await avochato.post(
        service.url(f"/webhooks/avochato/inbound?token={_token(avochato.auth_secret, 'inbound')}"),
        {"event_id": "Rg80gR7Jj0", "direction": "out", "from": FROM_NUMBER, "to": PATIENT},
    )

    assert (first, again) == (200, 200)
    assert (own, ignored) == (200, {"ok": True, "ignored": "outbound"})
    [row] = await _rows(
        db,
        "SELECT id, provider, provider_message_id, body, from_number, to_number FROM messages "
        "WHERE direction = 'inbound'",
    )
    assert tuple(row)[1:] == ("avochato", "43y83xbVNM", "Here it is", PATIENT, FROM_NUMBER)
    assert (await _message(service, row.id))["media_urls"] == [photo[0]]
    [sent] = await avochato.sent(1)
    assert (sent.to, sent.body) == (PATIENT, "Thanks for the photo! We will take a look.")
