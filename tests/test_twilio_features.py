"""Twilio beyond the basics: Messaging Service senders, a TLS-terminating proxy in front of the
service, and STOP answered by Twilio's Advanced Opt-Out instead of by us."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from agent.evals.scripted import ScriptedLLM
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
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

SERVICE_SID = "MG" + "0123456789abcdef" * 2


async def test_texts_go_out_through_the_messaging_service_from_our_number(
    make_service: ServiceFactory, twilio: TwilioStub
) -> None:
    service = await make_service(twilio_messaging_service_sid=SERVICE_SID)

    status, _ = await service.kickoff(**KICKOFF)

    assert status == 201
    await twilio.wait_for_messages(1)
    [sent] = twilio.messages
    assert sent["MessagingServiceSid"] == SERVICE_SID
    # With From as well, the thread keeps its number (Twilio's sticky sender would too).
    assert sent["From"] == FROM_NUMBER
    assert sent["StatusCallback"].startswith(f"{PUBLIC_URL}/webhooks/twilio/status?message_id=")


async def test_a_bad_messaging_service_sid_is_a_configuration_error(
    make_service: ServiceFactory,
) -> None:
    with pytest.raises(ValidationError, match="twilio_messaging_service_sid"):
        await make_service(twilio_messaging_service_sid="MGnot-a-sid")


async def _behind_proxy(service: Service, twilio: TwilioStub, public: str) -> int:
    """POST a text signed for `public`, the URL Twilio called, as the proxy forwards it."""
    params = {"MessageSid": "SM" + "e" * 32, "From": PATIENT, "To": FROM_NUMBER, "Body": "hi"}
    signature = RequestValidator(twilio.auth_token).compute_signature(
        f"{public}/sms/webhooks/twilio/sms", params
    )
    assert service.http is not None
    async with service.http.post(
        service.url("/webhooks/twilio/sms"),
        data=params,
        headers={
            "X-Twilio-Signature": signature,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": public.removeprefix("https://"),
            "X-Forwarded-Prefix": "/sms",
        },
    ) as response:
        return response.status


async def test_behind_a_proxy_the_forwarded_url_is_checked_when_trusted(
    make_service: ServiceFactory, twilio: TwilioStub, db: Database
) -> None:
    # Twilio calls the proxy's name; the configured public URL is an older one.
    public = "https://texts.bright-smiles.example"
    untrusting = await make_service(public_url="https://old.example.test")
    assert await _behind_proxy(untrusting, twilio, public) == 403
    assert await count_rows(db, "quarantined_webhooks") == 1
    assert await count_rows(db, "messages") == 0
    await untrusting.stop()

    trusting = await make_service(
        public_url="https://old.example.test", trust_forwarded_headers=True
    )
    assert await _behind_proxy(trusting, twilio, public) == 200
    assert await count_rows(db, "messages") == 1


async def _opted_out(db: Database) -> bool:
    from sqlalchemy import text

    from storage.engine import create_engine

    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT opted_out FROM contacts"))).first()
            return bool(row and row[0])
    finally:
        await engine.dispose()


async def test_with_advanced_opt_out_twilio_confirms_stop_and_we_only_record_it(
    make_service: ServiceFactory, twilio: TwilioStub, llm: ScriptedLLM, db: Database
) -> None:
    service = await make_service(twilio_advanced_opt_out=True)
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)

    status, _, _ = await service.twilio_inbound("STOP", sid="SM" + "5" * 32)

    assert status == 200
    await wait_until(lambda: _opted_out(db), what="the opt-out recorded")
    thread = await service.conversation(started["conversation_id"])
    assert "contact.opted_out" in [e["type"] for e in thread["events"]]
    await asyncio.sleep(0.5)
    assert len(twilio.messages) == 1  # Twilio's own confirmation is the one they get
    # START and HELP are Twilio's to answer too.
    await service.twilio_inbound("START", sid=f"SM{1:032d}")
    await wait_until(lambda: _not(_opted_out(db)), what="the opt-in recorded")
    await service.twilio_inbound("HELP", sid=f"SM{2:032d}")
    await wait_until(lambda: _handled(service, started["conversation_id"], 3), what="HELP")
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1
    assert llm.requests == []


async def _handled(service: Service, conversation_id: str, n: int) -> bool:
    """The thread's turns have run on `n` texts (each turn is recorded, fast path or not)."""
    thread = await service.conversation(conversation_id)
    return len(thread["agent_runs"]) >= n


async def _not(check: object) -> bool:
    assert asyncio.iscoroutine(check)
    return not await check


async def test_without_it_we_confirm_stop_ourselves(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    await service.twilio_inbound("STOP", sid="SM" + "6" * 32)
    await twilio.wait_for_messages(1)
    assert "unsubscribed" in twilio.messages[0]["Body"].lower() or "stop" in (
        twilio.messages[0]["Body"].lower()
    )
    assert await _opted_out(db)


async def test_words_twilio_does_not_know_are_still_confirmed_by_us(
    make_service: ServiceFactory, twilio: TwilioStub, db: Database
) -> None:
    service = await make_service(twilio_advanced_opt_out=True)

    await service.twilio_inbound("please stop texting me", sid="SM" + "4" * 32)

    await twilio.wait_for_messages(1)
    assert await _opted_out(db)
