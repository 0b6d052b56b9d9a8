"""The service as real processes: a crash loses no accepted text; `simulate` talks to `serve`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from agent.evals.scripted import ScriptedLLM, hold, reply
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, PUBLIC_URL, Database, post_signed, read_conversation
from tests.processes import ServeProcess
from webhooks.cli import main

pytestmark = pytest.mark.slow


def _env(db: Database, **extra: str) -> dict[str, str]:
    env = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_FROM_NUMBER": FROM_NUMBER,
        "SMSAGENT_BUSINESS_NAME": "Bright Smiles Dental",
        "SMSAGENT_TURN_QUIET_SECONDS": "0.05",
        "SMSAGENT_WORKER_POLL_SECONDS": "0.1",
        "SMSAGENT_JOB_LEASE_SECONDS": "1.5",
        "SMSAGENT_LLM_MAX_RETRIES": "0",
        "SMSAGENT_LOG_LEVEL": "INFO",
    }
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    env.update(extra)
    return env


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        await process.stop()


async def test_a_crash_mid_turn_loses_nothing_and_replies_once(
    db: Database,
    llm: ScriptedLLM,
    twilio: TwilioStub,
    processes: list[ServeProcess],
    tmp_path: Path,
) -> None:
    env = _env(
        db,
        SMSAGENT_SMS_PROVIDER="twilio",
        SMSAGENT_PUBLIC_URL=PUBLIC_URL,
        SMSAGENT_TWILIO_API_URL=twilio.base_url,
        SMSAGENT_TWILIO_ACCOUNT_SID=twilio.account_sid,
        SMSAGENT_TWILIO_AUTH_TOKEN=twilio.auth_token,
        SMSAGENT_LLM_BASE_URL=llm.base_url,
        SMSAGENT_LLM_MODEL="scripted-model",
    )
    first = ServeProcess(env, tmp_path / "serve-1.log")
    processes.append(first)
    await first.start()
    llm.script(hold(), reply("Thanks for letting us know, Sarah."))

    params = {
        "MessageSid": "SM" + "7" * 32,
        "From": PATIENT,
        "To": FROM_NUMBER,
        "Body": "when is it?",
    }
    async with aiohttp.ClientSession() as http:
        status, _ = await post_signed(
            http,
            f"{first.base_url}/webhooks/twilio/sms",
            params,
            auth_token=twilio.auth_token,
            signed_url=f"{PUBLIC_URL}/webhooks/twilio/sms",
        )
    assert status == 200
    await llm.wait_for_requests(1)
    await first.kill()  # the model is still thinking; nothing has been sent

    second = ServeProcess(env, tmp_path / "serve-2.log")
    processes.append(second)
    await second.start()

    await twilio.wait_for_messages(1, timeout=20)
    await asyncio.sleep(1.0)
    assert [m["Body"] for m in twilio.messages] == ["Thanks for letting us know, Sarah."]
    assert len(llm.requests) == 2
    thread = await read_conversation(db, await _only_conversation(db))
    assert [m.direction for m in thread.messages] == ["inbound", "outbound"]
    assert thread.messages[1].status == "sent"


async def test_simulate_talks_to_serve(
    sqlite_db: Database, llm: ScriptedLLM, processes: list[ServeProcess], tmp_path: Path
) -> None:
    env = _env(sqlite_db, SMSAGENT_LLM_BASE_URL=llm.base_url)
    serve = ServeProcess(env, tmp_path / "serve.log")
    processes.append(serve)
    await serve.start()
    llm.script(reply("Hi! How can I help with your visit?"))

    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["simulate", "--url", serve.base_url, "--from", "(310) 555-1234", "when is my cleaning?"],
        env=env,
    )

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Hi! How can I help with your visit?"
    log = (tmp_path / "serve.log").read_text()
    assert "when is my cleaning" not in log  # bodies never reach the logs
    assert PATIENT not in log  # nor full phone numbers


async def test_simulate_without_a_model_gets_the_holding_reply(
    sqlite_db: Database, processes: list[ServeProcess], tmp_path: Path
) -> None:
    env = _env(sqlite_db)
    serve = ServeProcess(env, tmp_path / "serve.log")
    processes.append(serve)
    await serve.start()
    args = ["simulate", "--url", serve.base_url, "--from", "+13105551234", "--timeout", "3"]

    first = await asyncio.to_thread(CliRunner().invoke, main, [*args, "hello"], env=env)
    assert first.exit_code == 0, first.output
    assert "get back to you shortly" in first.output

    second = await asyncio.to_thread(CliRunner().invoke, main, [*args, "hello?"], env=env)
    assert second.exit_code == 0, second.output
    assert "waiting for a person" in second.output


async def test_simulate_says_when_no_service_runs() -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["simulate", "--url", "http://127.0.0.1:9", "--from", "+13105551234", "hi"],
    )
    assert result.exit_code == 1
    assert "is `smsagent serve` running?" in result.output


async def _only_conversation(db: Database) -> str:
    from agent.transcripts import list_recent
    from storage.engine import create_engine, create_session_factory

    engine = create_engine(db.url, schema=db.schema)
    try:
        [item] = await list_recent(sessions=create_session_factory(engine))
        return item.id
    finally:
        await engine.dispose()
