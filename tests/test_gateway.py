"""The signed gateway's contract: texts and statuses signed with the workspace's secret are
taken once, anything else is refused and kept in quarantine; sends reach the gateway signed
and in the documented shape, with Twilio's retry policy; each workspace has its own gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply
from agent.workspaces import Credentials, create_workspace, set_gateway
from storage.engine import SessionFactory, create_engine, create_session_factory
from tests.conftest import ServiceFactory
from tests.fakes.gateway_server import SIGNATURE_HEADER, GatewayStub, signature, signed_by
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
from webhooks.cli import main

SECOND_NUMBER = "+15550002222"


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayStub]:
    async with GatewayStub() as stub:
        yield stub


@pytest.fixture
async def service(make_service: ServiceFactory, gateway: GatewayStub) -> Service:
    return await make_service(**gateway.settings())


async def _rows(db: Database, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _sessions(db: Database) -> AsyncIterator[SessionFactory]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def _second_workspace(db: Database, gateway_url: str) -> tuple[Credentials, str]:
    """A workspace texting from SECOND_NUMBER through its own gateway; its credentials and
    gateway secret."""
    async with _sessions(db) as sessions:
        credentials = await create_workspace(
            sessions,
            name="Lakeside Family Dental",
            vertical="dental",
            timezone="America/Chicago",
            numbers=[SECOND_NUMBER],
            provider="gateway",
        )
        secret = await set_gateway(sessions, credentials.id, gateway_url)
    assert secret is not None
    return credentials, secret


async def _message(service: Service, message_id: str) -> dict[str, Any]:
    status, body, _ = await service.request("GET", f"/v1/messages/{message_id}")
    assert status == 200, body
    return dict(body)


async def _status_is(service: Service, message_id: str, status: str) -> bool:
    return bool((await _message(service, message_id))["status"] == status)


def _text(to: str = FROM_NUMBER, **fields: Any) -> dict[str, Any]:
    return {
        "type": "message.received",
        "id": "gw_in_0001",
        "from": PATIENT,
        "to": to,
        "text": "Is Thursday at 10 still open?",
        **fields,
    }


async def test_a_signed_text_with_pictures_is_stored_once_and_answered_through_the_gateway(
    service: Service, gateway: GatewayStub, llm: ScriptedLLM, db: Database
) -> None:
    llm.script(reply("Thanks for the photos! We will take a look."))
    media = [
        {"url": gateway.media_url("front.jpg"), "content_type": "image/jpeg"},
        {"url": gateway.media_url("side.jpg"), "content_type": "image/jpeg"},
    ]

    status, answer = await gateway.post(service.url(""), _text(media=media))
    again, repeated = await gateway.post(service.url(""), _text(media=media))

    assert status == 200, answer
    assert answer["ok"] is True
    assert answer["duplicate"] is False
    assert answer["message_id"].startswith("msg_")
    assert (again, repeated["duplicate"]) == (200, True)
    [stored] = await _rows(
        db,
        "SELECT id, provider, provider_message_id, from_number, to_number, workspace_id "
        "FROM messages WHERE direction = 'inbound'",
    )
    assert tuple(stored) == (
        answer["message_id"],
        "gateway",
        "ws_default/gw_in_0001",
        PATIENT,
        FROM_NUMBER,
        "ws_default",
    )
    inbound = await _message(service, answer["message_id"])
    assert inbound["media_urls"] == [item["url"] for item in media]

    [sent] = await gateway.sent(1)
    assert (sent.to, sent.sender) == (PATIENT, FROM_NUMBER)
    assert sent.body == "Thanks for the photos! We will take a look."


async def test_sends_reach_the_gateway_signed_and_statuses_come_back(
    service: Service, gateway: GatewayStub
) -> None:
    picture = "https://cdn.example.com/office-map.png"
    status, started = await service.kickoff(**KICKOFF, media_urls=[picture])
    assert status == 201, started
    message_id = started["message_id"]

    [sent] = await gateway.sent(1)

    request = gateway.requests[0]
    assert request["headers"]["Content-Type"] == "application/json"
    assert signed_by(gateway.secret, request["body"], request["headers"][SIGNATURE_HEADER])
    assert sent.extra == {
        "type": "message.send",
        "id": message_id,
        "from": FROM_NUMBER,
        "to": PATIENT,
        "text": KICKOFF["message"],
        "media_urls": [picture],
        "status_url": f"{PUBLIC_URL}/webhooks/gateway/ws_default",
        "gateway_id": sent.provider_id,
    }
    await wait_until(lambda: _status_is(service, message_id, "sent"), what="the send recorded")

    assert await gateway.report(service.url(""), sent, "delivered") == 200
    code, late = await gateway.post(
        service.url(""), {"type": "message.status", "id": sent.provider_id, "status": "sent"}
    )
    assert (code, late) == (200, {"ok": True, "applied": False})  # late: statuses only move on
    message = await _message(service, message_id)
    assert message["status"] == "delivered"
    assert message["delivered_at"] is not None


async def test_a_status_names_its_text_by_our_id_before_the_gateway_id_is_known(
    service: Service, gateway: GatewayStub, db: Database
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    [sent] = await gateway.sent(1)
    await wait_until(lambda: _status_is(service, started["message_id"], "sent"), what="sent")

    code, answer = await gateway.post(
        service.url(""),
        {
            "type": "message.status",
            "id": sent.provider_id,
            "message_id": started["message_id"],
            "status": "undelivered",
            "error_code": "30005",
            "error_message": "unknown handset",
        },
    )

    assert (code, answer) == (200, {"ok": True, "applied": True})
    message = await _message(service, started["message_id"])
    assert (message["status"], message["error_code"]) == ("undelivered", "30005")


def _forgeries(gateway: GatewayStub) -> dict[str, dict[str, Any]]:
    """Each way a request can fail its check: the post's arguments, and the reason's words."""
    body = json.dumps(_text()).encode()
    now = int(time.time())
    good = signature(gateway.secret, body, now)
    return {
        "the body was changed": {
            "args": {"raw": body.replace(b"Thursday", b"Saturday"), "header": good},
            "reason": "does not match",
        },
        "stale": {"args": {"raw": body, "timestamp": now - 900}, "reason": "900 s older"},
        "from the future": {"args": {"raw": body, "timestamp": now + 900}, "reason": "ahead"},
        "truncated": {"args": {"raw": body, "header": good[:-20]}, "reason": "malformed"},
        "no header": {"args": {"raw": body, "header": ""}, "reason": "no Smsagent-Signature"},
        "wrong secret": {
            "args": {"raw": body, "secret": "gwsec_not-the-workspace-secret"},
            "reason": "does not match",
        },
        "unknown workspace": {
            "args": {"raw": body, "workspace_id": "ws_nobody"},
            "reason": "no workspace 'ws_nobody'",
        },
    }


async def test_forged_stale_or_misaddressed_requests_are_refused_and_kept(
    service: Service, gateway: GatewayStub, llm: ScriptedLLM, db: Database
) -> None:
    forgeries = _forgeries(gateway)
    kept: dict[str, str] = {}
    for what, forgery in forgeries.items():
        status, answer = await gateway.post(service.url(""), **forgery["args"])
        assert status == 403, what
        assert answer["error"]["code"] == "invalid_signature", what
        kept[what] = answer["error"]["details"]["quarantine_id"]

    rows = {
        row.id: row
        for row in await _rows(db, "SELECT id, provider, path, reason FROM quarantined_webhooks")
    }
    assert set(rows) == set(kept.values())
    for what, forgery in forgeries.items():
        row = rows[kept[what]]
        assert row.provider == "gateway", what
        assert forgery["reason"] in row.reason, (what, row.reason)
    assert rows[kept["unknown workspace"]].path == "/webhooks/gateway/ws_nobody"
    await asyncio.sleep(0.2)
    assert await count_rows(db, "messages") == 0
    assert await count_rows(db, "contacts") == 0
    assert llm.requests == []


async def test_bad_content_is_refused_with_what_is_wrong_and_not_quarantined(
    service: Service, gateway: GatewayStub, db: Database
) -> None:
    status, answer = await gateway.post(service.url(""), _text(to="+15550009999"))
    assert status == 422
    assert answer["error"]["code"] == "number_not_in_workspace"

    status, answer = await gateway.post(service.url(""), {"type": "message.sent", "id": "x"})
    assert status == 422
    assert answer["error"]["code"] == "unknown_type"
    assert answer["error"]["details"]["allowed"] == ["message.received", "message.status"]

    status, answer = await gateway.post(service.url(""), _text(text="", media=[]))
    assert status == 422
    assert answer["error"]["code"] == "validation_error"

    status, answer = await gateway.post(service.url(""), raw=b"not json")
    assert status == 400
    assert answer["error"]["code"] == "invalid_json"

    assert await count_rows(db, "messages") == 0
    assert await count_rows(db, "quarantined_webhooks") == 0


async def test_each_workspace_has_its_own_gateway_secret_and_url(
    service: Service, gateway: GatewayStub, db: Database
) -> None:
    async with GatewayStub() as other:
        credentials, secret = await _second_workspace(db, other.send_url)
        other.secret, other.workspace_id = secret, credentials.id

        # Its gateway's texts come in under its secret, to its numbers only.
        assert (
            await other.text_in(service.url(""), sender=PATIENT, to=SECOND_NUMBER, body="hi") == 200
        )
        forged, _ = await gateway.post(
            service.url(""), _text(to=SECOND_NUMBER), workspace_id=credentials.id
        )
        assert forged == 403
        mine, answer = await gateway.post(service.url(""), _text(to=SECOND_NUMBER, id="gw_2"))
        assert (mine, answer["error"]["code"]) == (422, "number_not_in_workspace")
        [(workspace_id,)] = await _rows(
            db, "SELECT workspace_id FROM messages WHERE direction = 'inbound'"
        )
        assert workspace_id == credentials.id

        # Its texts go to its gateway, signed with its secret.
        status, body, _ = await service.request(
            "POST",
            "/v1/messages",
            json={"to": "(310) 555-7777", "message": "Your crown is ready for pickup."},
            headers={"Authorization": f"Bearer {credentials.api_key}"},
            auth=False,
        )
        assert status == 201, body
        # The agent's answer to "hi" goes the same way; which comes first is up to the worker.
        [sent] = [m for m in await other.sent(2) if m.extra["id"] == body["message_id"]]
        assert sent.sender == SECOND_NUMBER
        assert sent.body == "Your crown is ready for pickup."
        assert sent.extra["status_url"] == f"{PUBLIC_URL}/webhooks/gateway/{credentials.id}"
        for request in other.requests:
            assert signed_by(secret, request["body"], request["headers"][SIGNATURE_HEADER])
        assert gateway.requests == []

        # A status for it counts under its own workspace only.
        code, answer = await gateway.post(
            service.url(""), {"type": "message.status", "id": sent.provider_id, "status": "failed"}
        )
        assert (code, answer) == (200, {"ok": True, "applied": False})
        assert await other.report(service.url(""), sent, "delivered") == 200
        message = await _message_as(service, credentials.api_key, body["message_id"])
        assert message["status"] == "delivered"


async def _message_as(service: Service, api_key: str, message_id: str) -> dict[str, Any]:
    status, body, _ = await service.request(
        "GET",
        f"/v1/messages/{message_id}",
        headers={"Authorization": f"Bearer {api_key}"},
        auth=False,
    )
    assert status == 200, body
    return dict(body)


async def test_rate_limits_and_outages_are_retried(service: Service, gateway: GatewayStub) -> None:
    gateway.fail_next(429, "rate_limited", "slow down", retry_after=1)
    gateway.fail_next(503, "unavailable", "back soon")

    _, started = await service.kickoff(**KICKOFF)

    await gateway.wait_for_messages(1, timeout=20)
    assert [r["status"] for r in gateway.requests] == [429, 503, 200]
    await wait_until(lambda: _status_is(service, started["message_id"], "sent"), what="sent")


async def test_a_refusal_is_final_and_an_opted_out_answer_marks_the_contact(
    service: Service, gateway: GatewayStub
) -> None:
    gateway.fail_next(400, "invalid_number", "not a mobile number")
    _, refused = await service.kickoff(**KICKOFF)
    await wait_until(lambda: _status_is(service, refused["message_id"], "failed"), what="failed")
    assert (await _message(service, refused["message_id"]))["error_code"] == "invalid_number"

    gateway.fail_next(400, "opted_out", "the recipient texted STOP")
    _, blocked = await service.kickoff(**{**KICKOFF, "to": "(310) 555-8888"})
    await wait_until(lambda: _status_is(service, blocked["message_id"], "failed"), what="failed")

    await asyncio.sleep(0.3)
    assert [r["status"] for r in gateway.requests] == [400, 400]
    thread = await service.conversation(blocked["conversation_id"])
    assert thread["contact"]["opted_out"] is True
    first = await service.conversation(refused["conversation_id"])
    assert first["contact"]["opted_out"] is False


def _env(db: Database) -> dict[str, str]:
    env = {"SMSAGENT_DATABASE_URL": db.url, "SMSAGENT_TIMEZONE": "America/Denver"}
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    return env


async def _cli(db: Database, *args: str) -> Result:
    # The CLI runs its own event loop, so it is driven from a thread.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=_env(db))


async def test_the_cli_points_a_workspace_at_a_gateway_with_a_new_secret(
    service: Service, db: Database
) -> None:
    async with GatewayStub() as other:
        credentials, _ = await _second_workspace(db, "https://old-gateway.example.com/send")

        result = await _cli(db, "workspaces", "gateway", credentials.id, other.send_url, "--json")

        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert shown["id"] == credentials.id
        assert shown["gateway_url"] == other.send_url
        assert shown["gateway_secret"].startswith("gwsec_")
        [row] = await _rows(
            db,
            "SELECT gateway_url, gateway_secret FROM workspaces WHERE id = :id",
            id=credentials.id,
        )
        assert tuple(row) == (other.send_url, shown["gateway_secret"])
        # The running service takes the printed secret for the workspace's texts.
        other.secret, other.workspace_id = shown["gateway_secret"], credentials.id
        assert (
            await other.text_in(service.url(""), sender=PATIENT, to=SECOND_NUMBER, body="hi") == 200
        )

        plain = await _cli(db, "workspaces", "gateway", credentials.id, other.send_url)
        assert plain.exit_code == 0, plain.output
        assert plain.output.strip().startswith("gwsec_")
        assert plain.output.strip() != shown["gateway_secret"]  # a new secret every time

        off = await _cli(db, "workspaces", "gateway", credentials.id, "--off", "--json")
        assert off.exit_code == 0, off.output
        assert json.loads(off.output)["gateway_secret"] is None
        [row] = await _rows(
            db,
            "SELECT gateway_url, gateway_secret FROM workspaces WHERE id = :id",
            id=credentials.id,
        )
        assert tuple(row) == (None, None)

    default = await _cli(db, "workspaces", "gateway", "ws_default", "https://gw.example.com")
    assert default.exit_code == 1
    assert "SMSAGENT_GATEWAY_URL" in default.output
    unknown = await _cli(db, "workspaces", "gateway", "ws_nobody", "https://gw.example.com")
    assert unknown.exit_code == 1
    assert "no workspace ws_nobody" in unknown.output
    neither = await _cli(db, "workspaces", "gateway", credentials.id)
    assert neither.exit_code == 2
    not_a_url = await _cli(db, "workspaces", "gateway", credentials.id, "gw.example.com")
    assert not_a_url.exit_code == 2


async def test_a_gateway_on_a_private_address_is_not_called_unless_allowed(
    make_service: ServiceFactory, gateway: GatewayStub
) -> None:
    service = await make_service(**gateway.settings(), callbacks_allow_private=False)

    _, started = await service.kickoff(**KICKOFF)

    await wait_until(lambda: _status_is(service, started["message_id"], "failed"), what="failed")
    assert (await _message(service, started["message_id"]))["error_code"] == "private_address"
    assert gateway.requests == []


async def test_two_workspaces_gateways_may_use_the_same_ids(
    service: Service, gateway: GatewayStub, db: Database
) -> None:
    async with GatewayStub() as other:
        credentials, secret = await _second_workspace(db, other.send_url)
        other.secret, other.workspace_id = secret, credentials.id

        first = await gateway.text_in(
            service.url(""), sender=PATIENT, to=FROM_NUMBER, body="hi", provider_id="1"
        )
        second = await other.text_in(
            service.url(""), sender=PATIENT, to=SECOND_NUMBER, body="hello", provider_id="1"
        )
        again = await other.text_in(
            service.url(""), sender=PATIENT, to=SECOND_NUMBER, body="hello", provider_id="1"
        )

        assert (first, second, again) == (200, 200, 200)
        rows = await _rows(
            db,
            "SELECT workspace_id, provider_message_id, body FROM messages "
            "WHERE direction = 'inbound' ORDER BY workspace_id",
        )
        assert sorted(tuple(r) for r in rows) == sorted(
            [
                ("ws_default", "ws_default/1", "hi"),
                (credentials.id, f"{credentials.id}/1", "hello"),
            ]
        )
