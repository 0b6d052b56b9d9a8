"""A webhook refused for its signature is answered 403 and kept whole; `smsagent quarantine`
lists it, shows it and replays it once the configuration is fixed, without doubling anything."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from agent.evals.scripted import ScriptedLLM, reply
from storage.engine import create_engine
from tests.conftest import ServiceFactory
from tests.fakes.gateway_server import GatewayStub
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
from webhooks.cli import main

WRONG_URL = "https://old-name.example.test"


def _env(db: Database, twilio: TwilioStub, **extra: str) -> dict[str, str]:
    env = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_TIMEZONE": "America/Denver",
        "SMSAGENT_SMS_PROVIDER": "twilio",
        "SMSAGENT_FROM_NUMBER": FROM_NUMBER,
        "SMSAGENT_PUBLIC_URL": PUBLIC_URL,
        "SMSAGENT_TWILIO_API_URL": twilio.base_url,
        "SMSAGENT_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "SMSAGENT_TWILIO_AUTH_TOKEN": twilio.auth_token,
        "SMSAGENT_OPERATOR": "Dana at the front desk",
        **extra,
    }
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    return env


async def _cli(env: dict[str, str], *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def _rows(db: Database, sql: str) -> list[Any]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def test_a_text_refused_for_a_wrong_public_url_is_kept_and_replayed_once(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    # The service is told the wrong public URL: every genuine text fails its signature.
    service = await make_service(public_url=WRONG_URL)
    llm.script(reply("Thanks for your text! How can we help?"))

    status, answer, _ = await service.twilio_inbound(
        "Can I come Thursday at 10?", sid="SM" + "7" * 32
    )

    assert status == 403
    error = json.loads(answer)["error"]
    assert error["code"] == "invalid_signature"
    kept = error["details"]["quarantine_id"]
    assert kept.startswith("qwh_")
    assert await count_rows(db, "messages") == 0
    [(provider, path, reason, body)] = await _rows(
        db, "SELECT provider, path, reason, body FROM quarantined_webhooks"
    )
    assert (provider, path) == ("twilio", "/webhooks/twilio/sms")
    assert "X-Twilio-Signature does not match" in reason
    assert b"Thursday+at+10" in bytes(body)

    env = _env(db, twilio)
    listed = await _cli(env, "quarantine", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = [json.loads(line) for line in listed.output.splitlines()]
    assert row["id"] == kept
    assert row["replayed_at"] is None
    shown = await _cli(env, "quarantine", "show", kept[:12])
    assert shown.exit_code == 0, shown.output
    assert "POST /webhooks/twilio/sms" in shown.output
    assert "x-twilio-signature" in shown.output
    assert "Thursday+at+10" in shown.output

    # The replay checks it with the settings as they are now: the right public URL.
    replayed = await _cli(env, "quarantine", "replay", kept, "--json")
    assert replayed.exit_code == 0, replayed.output
    done = json.loads(replayed.output)
    assert done["status"] == 200
    assert done["signature"] == "valid"

    # The running service's worker takes the turn and answers through Twilio.
    await twilio.wait_for_messages(1, timeout=10)
    assert twilio.messages[0]["Body"] == "Thanks for your text! How can we help?"
    assert twilio.messages[0]["To"] == PATIENT

    again = await _cli(env, "quarantine", "replay", kept)
    assert again.exit_code != 0
    assert "was replayed" in again.output
    forced = await _cli(env, "quarantine", "replay", kept, "--again", "--json")
    assert forced.exit_code == 0, forced.output
    await asyncio.sleep(0.5)
    assert await count_rows(db, "messages") == 2  # the text once, the reply once
    assert len(twilio.messages) == 1
    [(replayed_by, replay_status)] = await _rows(
        db, "SELECT replayed_by, replay_status FROM quarantined_webhooks"
    )
    assert (replayed_by, replay_status) == ("Dana at the front desk", 200)


async def test_a_forgery_stays_refused_unless_an_operator_vouches_for_it(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    status, answer, _ = await service.twilio_inbound(
        "hello", sid="SM" + "8" * 32, signature="Zm9yZ2Vk"
    )
    assert status == 403
    kept = json.loads(answer)["error"]["details"]["quarantine_id"]
    env = _env(db, twilio)

    refused = await _cli(env, "quarantine", "replay", kept)
    assert refused.exit_code != 0
    assert "still refused" in refused.output
    checked = await _cli(env, "quarantine", "replay", kept, "--dry-run")
    assert checked.exit_code != 0
    assert await count_rows(db, "messages") == 0

    vouched = await _cli(env, "quarantine", "replay", kept, "--trust", "--json")
    assert vouched.exit_code == 0, vouched.output
    assert json.loads(vouched.output)["signature"].startswith("trusted: ")
    await wait_until(lambda: _messages(db, 1), what="the vouched-for text stored")


async def _messages(db: Database, n: int) -> bool:
    return await count_rows(db, "messages") >= n


async def test_a_flood_of_forgeries_keeps_only_the_newest(
    make_service: ServiceFactory, db: Database
) -> None:
    service = await make_service(quarantine_keep=10)
    for n in range(14):
        status, _, _ = await service.twilio_inbound(
            f"spam {n}", sid=f"SM{n:032d}", signature="Zm9yZ2Vk"
        )
        assert status == 403
    assert await count_rows(db, "quarantined_webhooks") == 10
    bodies = [bytes(b) for (b,) in await _rows(db, "SELECT body FROM quarantined_webhooks")]
    assert not any(b"spam+0&" in b or b"spam+3&" in b for b in bodies)
    assert any(b"spam+13" in b for b in bodies)


async def test_credentials_are_not_kept(service: Service, db: Database) -> None:
    assert service.http is not None
    async with service.http.post(
        service.url("/webhooks/twilio/sms"),
        data={"MessageSid": "SM" + "1" * 32, "From": PATIENT, "Body": "hi"},
        headers={"X-Twilio-Signature": "Zm9yZ2Vk", "Authorization": "Basic c2VjcmV0"},
    ) as response:
        assert response.status == 403
    [(headers,)] = await _rows(db, "SELECT headers FROM quarantined_webhooks")
    stored = json.loads(headers) if isinstance(headers, str) else headers
    assert "authorization" not in stored
    assert stored["x-twilio-signature"] == "Zm9yZ2Vk"


async def test_an_unknown_id_and_an_empty_quarantine_are_plain(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    env = _env(db, twilio)
    empty = await _cli(env, "quarantine", "list")
    assert empty.exit_code == 0
    assert empty.output == ""  # piped: nothing, not a table
    missing = await _cli(env, "quarantine", "show", "qwh_nothing")
    assert missing.exit_code != 0
    assert "no quarantined webhook 'qwh_nothing'" in missing.output


async def test_an_altered_body_or_a_truncated_signature_is_refused_and_kept(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    assert service.http is not None
    params = {"MessageSid": "SM" + "2" * 32, "From": PATIENT, "To": FROM_NUMBER, "Body": "hi"}
    signature = RequestValidator(twilio.auth_token).compute_signature(
        f"{PUBLIC_URL}/webhooks/twilio/sms", params
    )
    for sent, header in (
        ({**params, "Body": "hi, cancel everything"}, signature),  # altered on the way
        (params, signature[:-6]),  # truncated
    ):
        async with service.http.post(
            service.url("/webhooks/twilio/sms"), data=sent, headers={"X-Twilio-Signature": header}
        ) as response:
            assert response.status == 403
    assert await count_rows(db, "quarantined_webhooks") == 2
    assert await count_rows(db, "messages") == 0


async def test_a_gateway_text_refused_for_a_wrong_secret_replays_once_it_is_fixed(
    make_service: ServiceFactory, twilio: TwilioStub, db: Database
) -> None:
    async with GatewayStub() as gateway:
        right = gateway.settings()
        wrong = await make_service(**{**right, "gateway_secret": "gwsec_" + "x" * 32})
        code = await gateway.text_in(
            wrong.url(""), sender=PATIENT, to=FROM_NUMBER, body="hi", provider_id="in-1"
        )
        assert code == 403
        await wrong.stop()
        [(kept,)] = await _rows(db, "SELECT id FROM quarantined_webhooks")

        # The secret is fixed where the service reads it; the service starts again with it.
        await make_service(**right)
        env = _env(
            db,
            twilio,
            SMSAGENT_SMS_PROVIDER="gateway",
            SMSAGENT_GATEWAY_URL=str(right["gateway_url"]),
            SMSAGENT_GATEWAY_SECRET=str(right["gateway_secret"]),
        )
        replayed = await _cli(env, "quarantine", "replay", kept, "--json")
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.output)["status"] == 200
        again = await _cli(env, "quarantine", "replay", kept, "--again", "--json")
        assert again.exit_code == 0, again.output
        assert '"duplicate": true' in json.loads(again.output)["answer"]
        [(body, provider_id)] = await _rows(
            db, "SELECT body, provider_message_id FROM messages WHERE direction = 'inbound'"
        )
        assert (body, provider_id) == ("hi", "ws_default/in-1")
