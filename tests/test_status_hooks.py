"""The business hears, through its signed webhook, what happens to its texts, customers and
appointments: kept with each change, retried until taken, across restarts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text

from agent.deps import DEFAULT_WORKSPACE_ID
from agent.evals.scripted import ScriptedLLM, reply, tool_call
from agent.hooks import HOOK_ATTEMPTS, MAX_RETRY_SECONDS, PrivateAddress, retry_delay
from storage.engine import create_engine
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, Database, Service, wait_until
from tests.test_kickoff import KICKOFF
from webhooks.outbound import PublicResolver

SECRET = "whsec_status_0123456789"


@dataclass(frozen=True)
class Received:
    body: bytes
    signature: str | None
    status: int  # what the endpoint answered

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """The business's endpoint: answers `statuses` in turn, then 500 while `failing`, else 200."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.failing = False
        self.requests: list[Received] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else (500 if self.failing else 200)
        self.requests.append(Received(body, request.headers.get("Smsagent-Signature"), status))
        return web.json_response({"ok": status < 300}, status=status)

    def taken(self, kind: str) -> list[dict[str, Any]]:
        """Events of `kind` ("message.sent", or Avoca's "sms.delivered") answered with a 2xx."""
        return [
            r.event
            for r in self.requests
            if r.status < 300 and kind in (r.event.get("type"), r.event.get("event"))
        ]

    async def wait_for(self, kind: str, count: int = 1, within: float = 10) -> list[dict[str, Any]]:
        async def arrived() -> bool:
            return len(self.taken(kind)) >= count

        await wait_until(arrived, within=within, what=f"{count} {kind} webhook(s)")
        return self.taken(kind)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield endpoint
    await runner.cleanup()


def _their_check(body: bytes, header: str | None) -> bool:
    """The receiver's side, from the documented recipe: HMAC-SHA256 with the secret over
    "<t>." and the raw body, the timestamp within five minutes."""
    parts = dict(part.split("=", 1) for part in (header or "").split(","))
    stamp = parts["t"]
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(stamp)) < 300 and hmac.compare_digest(mac, parts["v1"])


def _all_signed(receiver: Receiver) -> None:
    assert receiver.requests
    for request in receiver.requests:
        assert _their_check(request.body, request.signature), request.body


async def _hooked(make_service: ServiceFactory, receiver: Receiver, **overrides: Any) -> Service:
    return await make_service(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_retry_seconds=0.05,
        **overrides,
    )


async def _kickoff(service: Service, **overrides: Any) -> dict[str, Any]:
    status, started = await service.kickoff(**{**KICKOFF, **overrides})
    assert status == 201, started
    return dict(started)


async def _twilio_status(
    service: Service, message_id: str, sid: str, status: str, error_code: str | None = None
) -> None:
    params = {"MessageSid": sid, "MessageStatus": status}
    if error_code:
        params["ErrorCode"] = error_code
    code, _, _ = await service.twilio_post(
        f"/webhooks/twilio/status?message_id={message_id}", params
    )
    assert code == 204


async def _execute(db: Database, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_a_kickoff_reports_sent_then_delivered(
    make_service: ServiceFactory, receiver: Receiver
) -> None:
    # The console provider says "delivered" at once: the business still hears it was sent.
    service = await _hooked(make_service, receiver, sms_provider="console")
    started = await _kickoff(service)

    [delivered] = await receiver.wait_for("message.delivered")
    [sent] = await receiver.wait_for("message.sent")
    _all_signed(receiver)
    assert sent["created_at"] <= delivered["created_at"]
    assert sent["id"] != delivered["id"]
    assert sent["id"].startswith("evt_")
    assert sent["workspace_id"] == delivered["workspace_id"]
    data = delivered["data"]
    assert data["message_id"] == sent["data"]["message_id"] == started["message_id"]
    assert data["conversation_id"] == started["conversation_id"]
    assert (sent["data"]["status"], data["status"]) == ("sent", "delivered")
    assert data["to"] == PATIENT
    assert data["from"] == FROM_NUMBER
    assert data["segments"] == 1
    assert data["delivered_at"] is not None
    assert data["contact_id"].startswith("ct_")


async def test_provider_statuses_are_reported_as_they_move_forward(
    make_service: ServiceFactory, receiver: Receiver, twilio: TwilioStub
) -> None:
    service = await _hooked(make_service, receiver)
    first = await _kickoff(service)
    [sent] = await receiver.wait_for("message.sent")
    sid = twilio.messages[0]["sid"]
    assert sent["data"]["provider_message_id"] == sid
    assert sent["data"]["sent_at"] is not None

    await _twilio_status(service, first["message_id"], sid, "delivered")
    await _twilio_status(service, first["message_id"], sid, "sent")  # late: changes nothing
    [delivered] = await receiver.wait_for("message.delivered")
    assert delivered["data"]["message_id"] == first["message_id"]

    second = await _kickoff(service, to="(310) 555-7777", appointment=None)
    await receiver.wait_for("message.sent", 2)
    await _twilio_status(
        service, second["message_id"], twilio.messages[1]["sid"], "undelivered", "30003"
    )
    [failed] = await receiver.wait_for("message.failed")
    assert failed["data"]["message_id"] == second["message_id"]
    assert failed["data"]["status"] == "undelivered"
    assert failed["data"]["error_code"] == "30003"
    assert failed["data"]["to"] == "+13105557777"

    await asyncio.sleep(0.3)
    assert len(receiver.taken("message.sent")) == 2
    assert len(receiver.taken("message.delivered")) == 1
    _all_signed(receiver)


async def _avoca_send(service: Service, to: str) -> str:
    """Send through the Avoca-compatible route, as its document shows; the message's id."""
    status, body, _ = await service.request(
        "POST",
        "/compat/avoca/v1/outbound/sms/send",
        json={"to": to, "message": "Your plumber is on the way.", "message_type": "alert"},
        headers={"X-Workspace-ID": DEFAULT_WORKSPACE_ID},
    )
    assert status == 200, body
    return str(body["data"]["message_id"])


async def test_a_text_sent_through_avoca_reports_in_avocas_shape(
    make_service: ServiceFactory, receiver: Receiver, twilio: TwilioStub
) -> None:
    service = await _hooked(make_service, receiver)
    message_id = await _avoca_send(service, "+13105551234")
    [sent] = await receiver.wait_for("sms.sent")
    assert set(sent) == {"event", "message_id", "timestamp", "data"}
    assert sent["message_id"] == message_id
    assert sent["data"] == {
        "status": "sent",
        "sent_at": sent["timestamp"],
        "segments_sent": 1,
        "carrier": None,
        "device_type": None,
    }

    await _twilio_status(service, message_id, twilio.messages[0]["sid"], "delivered")
    [delivered] = await receiver.wait_for("sms.delivered")
    assert delivered["message_id"] == message_id
    assert delivered["data"] == {
        "status": "delivered",
        "delivered_at": delivered["timestamp"],
        "segments_sent": 1,
        "carrier": None,
        "device_type": None,
    }
    assert delivered["timestamp"].endswith("Z")

    other = await _avoca_send(service, "+13105557777")
    await receiver.wait_for("sms.sent", 2)
    await _twilio_status(service, other, twilio.messages[1]["sid"], "undelivered", "30003")
    [failed] = await receiver.wait_for("sms.failed")
    assert failed["message_id"] == other
    assert failed["data"] == {
        "status": "failed",
        "failed_at": failed["timestamp"],
        "segments_sent": 1,
        "carrier": None,
        "device_type": None,
        "error_code": "30003",
    }
    # Avoca's shape is for its statuses only: nothing native about these texts' delivery.
    assert not receiver.taken("message.sent")
    _all_signed(receiver)


async def test_texts_received_a_hand_off_and_a_stop_are_reported(
    make_service: ServiceFactory, receiver: Receiver
) -> None:
    # No model: anything the fast path cannot answer goes to a person.
    service = await _hooked(make_service, receiver, llm_base_url=None)
    status, _, _ = await service.twilio_inbound("Is there parking nearby?", sid="SM" + "1" * 32)
    assert status == 200

    [received] = await receiver.wait_for("message.received")
    [handoff] = await receiver.wait_for("conversation.handoff")
    data = received["data"]
    assert data["body"] == "Is there parking nearby?"
    assert data["from"] == PATIENT
    assert data["to"] == FROM_NUMBER
    assert data["provider_message_id"] == "SM" + "1" * 32
    assert data["message_id"].startswith("msg_")
    assert handoff["data"]["conversation_id"] == data["conversation_id"]
    assert handoff["data"]["contact_id"] == data["contact_id"]
    assert handoff["data"]["reason"] == "no model configured"

    await service.twilio_inbound("STOP", sid="SM" + "2" * 32)
    [opted_out] = await receiver.wait_for("contact.opted_out")
    assert opted_out["data"] == {
        "contact_id": data["contact_id"],
        "phone": PATIENT,
        "conversation_id": data["conversation_id"],
        "source": "keyword",
    }
    bodies = [e["data"]["body"] for e in await receiver.wait_for("message.received", 2)]
    assert bodies == ["Is there parking nearby?", "STOP"]
    thread = await service.conversation(data["conversation_id"])
    assert thread["contact"]["opted_out"] is True
    _all_signed(receiver)


async def test_a_confirmation_by_the_fast_path_is_reported(
    make_service: ServiceFactory, receiver: Receiver
) -> None:
    service = await _hooked(make_service, receiver)
    started = await _kickoff(service)
    await service.twilio_inbound("C", sid="SM" + "3" * 32)

    [confirmed] = await receiver.wait_for("appointment.confirmed")
    data = confirmed["data"]
    assert data["external_id"] == KICKOFF["appointment"]["external_id"]
    assert data["status"] == "confirmed"
    assert data["source"] == "fast_path"
    assert data["conversation_id"] == started["conversation_id"]
    assert data["starts_at"] == "2031-03-10T21:00:00Z"
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    assert data["appointment_id"] == thread["appointment"]["id"]
    _all_signed(receiver)


async def test_a_cancel_and_a_hand_off_by_the_agent_are_reported(
    make_service: ServiceFactory, receiver: Receiver, llm: ScriptedLLM
) -> None:
    service = await _hooked(make_service, receiver)
    started = await _kickoff(service)
    llm.script(
        tool_call("cancel_appointment", reason="moving away"),
        tool_call("handoff_to_human", reason="asks for a refund"),
        reply("Your cleaning is canceled. Someone from the office will follow up shortly."),
    )
    await service.twilio_inbound(
        "I'm moving away, please cancel. And my refund?", sid="SM" + "4" * 32
    )

    [canceled] = await receiver.wait_for("appointment.canceled")
    [handoff] = await receiver.wait_for("conversation.handoff")
    assert canceled["data"]["status"] == "canceled"
    assert canceled["data"]["reason"] == "moving away"
    assert canceled["data"]["source"] == "agent"
    assert canceled["data"]["conversation_id"] == started["conversation_id"]
    assert handoff["data"]["reason"] == "asks for a refund"
    assert handoff["data"]["conversation_id"] == started["conversation_id"]
    _all_signed(receiver)


async def test_an_endpoint_that_fails_twice_gets_the_event_on_the_third_try(
    make_service: ServiceFactory, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    service = await _hooked(make_service, receiver)
    started = await _kickoff(service)

    [sent] = await receiver.wait_for("message.sent")
    assert sent["data"]["message_id"] == started["message_id"]
    assert [r.status for r in receiver.requests] == [500, 500, 200]
    # The same event each time (the receiver deduplicates on its id), freshly signed.
    assert len({r.body for r in receiver.requests}) == 1
    _all_signed(receiver)


async def test_a_restart_between_attempts_loses_nothing(
    make_service: ServiceFactory, receiver: Receiver, db: Database
) -> None:
    receiver.failing = True
    service = await _hooked(make_service, receiver)
    started = await _kickoff(service)

    async def tried() -> bool:
        return bool(receiver.requests)

    await wait_until(tried, what="a first attempt")
    await service.stop()
    [(status, attempts)] = await _execute(
        db, "SELECT status, attempts FROM jobs WHERE kind = 'hook'"
    )
    assert status in ("queued", "running")
    assert attempts >= 1

    receiver.failing = False
    await _hooked(make_service, receiver)
    [sent] = await receiver.wait_for("message.sent", within=15)
    assert sent["data"]["message_id"] == started["message_id"]
    await asyncio.sleep(0.5)
    assert len(receiver.taken("message.sent")) == 1
    [(status,)] = await _execute(db, "SELECT status FROM jobs WHERE kind = 'hook'")
    assert status == "done"
    _all_signed(receiver)


async def test_without_a_webhook_nothing_is_queued(
    make_service: ServiceFactory, twilio: TwilioStub, db: Database
) -> None:
    service = await make_service()
    started = await _kickoff(service)
    await twilio.wait_for_messages(1)
    await _twilio_status(service, started["message_id"], twilio.messages[0]["sid"], "delivered")
    await service.twilio_inbound("C", sid="SM" + "5" * 32)
    await twilio.wait_for_messages(2)  # the confirmation's answer, before the next turn
    await service.twilio_inbound("STOP", sid="SM" + "6" * 32)
    await twilio.wait_for_messages(3)

    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    assert thread["contact"]["opted_out"] is True
    [(hooks,)] = await _execute(db, "SELECT count(*) FROM jobs WHERE kind = 'hook'")
    assert hooks == 0


def test_retries_go_on_for_about_a_day() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, HOOK_ATTEMPTS)]
    assert delays[:3] == [2.0, 4.0, 8.0]
    assert max(delays) == MAX_RETRY_SECONDS
    last_attempt_after = sum(delays)
    assert 24 * 3600 <= last_attempt_after <= 25 * 3600


async def test_a_webhook_to_a_private_address_is_refused_not_sent(
    make_service: ServiceFactory, receiver: Receiver, db: Database
) -> None:
    # The default: URLs businesses give reach public addresses only (the receiver is loopback).
    service = await _hooked(make_service, receiver, callbacks_allow_private=False)
    started = await _kickoff(service)

    async def settled() -> bool:
        rows = await _execute(
            db, "SELECT count(*) FROM jobs WHERE kind = 'hook' AND status IN ('queued', 'running')"
        )
        done = await _execute(db, "SELECT count(*) FROM jobs WHERE kind = 'hook'")
        return int(rows[0][0]) == 0 and int(done[0][0]) > 0

    await wait_until(settled, what="the webhooks settled")
    failed = await _execute(db, "SELECT status, last_error, attempts FROM jobs WHERE kind = 'hook'")
    assert failed
    for status, error, attempts in failed:
        assert (status, error, attempts) == ("failed", "the webhook URL is not a public address", 1)
    assert receiver.requests == []
    assert started["conversation_id"]


async def test_a_name_resolving_only_to_private_addresses_is_refused() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(PrivateAddress):
            # A name (not a literal): the guarded client's resolver sees it.
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
