"""`smsagent reply / handback / close / reopen / tag / untag / note`: a person takes a thread over
from the terminal, against the database of a running service."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from agent.deps import DEFAULT_WORKSPACE_ID
from agent.evals.scripted import ScriptedLLM, hold, reply
from storage.engine import create_engine
from tests.fakes.twilio_server import TwilioStub
from tests.harness import (
    API_KEY,
    FROM_NUMBER,
    PATIENT,
    Database,
    Service,
    count_rows,
    read_conversation,
    wait_until,
)
from tests.processes import ROOT, ServeProcess
from tests.test_avochato_contacts import add_member
from tests.workspaces import text_in
from webhooks.cli import main

MARIA = "Hi, this is Maria at the front desk. I can move you to Thursday at 4pm."


def _env(db: Database, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_DATABASE_SCHEMA": db.schema,
        "SMSAGENT_OPERATOR": "Dana",
    }
    env.update(extra)
    return env


async def _cli(db: Database, *args: str, **env: str | None) -> Result:
    # The CLI runs its own event loop, so it is driven from a thread.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=_env(db, **env))


async def _json(db: Database, *args: str, **env: str | None) -> dict[str, Any]:
    result = await _cli(db, *args, "--json", **env)
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def _kick(service: Service, phone: str = "(310) 555-1234") -> str:
    status, body = await service.kickoff(to=phone)
    assert status == 201, body
    return str(body["conversation_id"])


async def _sender_user_id(db: Database, message_id: str) -> str | None:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT sender_user_id FROM messages WHERE id = :id"), {"id": message_id}
            )
            value = found.scalar_one()
            return None if value is None else str(value)
    finally:
        await engine.dispose()


def _events(thread: Any, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in thread.events if e.type == kind]


async def test_reply_as_a_team_member_silences_the_agent(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    conversation_id = await _kick(service)
    await twilio.wait_for_messages(1)
    maria = await add_member(db, DEFAULT_WORKSPACE_ID, "maria@brightsmiles.test")
    short = conversation_id.removeprefix("conv_")[:12].upper()

    # By email, any case: the message is the team member's, under their name.
    sent = await _json(db, "reply", short, MARIA, "--as", "Maria@BrightSmiles.test")

    assert sent["conversation_id"] == conversation_id
    assert (sent["status"], sent["mode"]) == ("open", "human")
    assert (sent["author_name"], sent["user_id"]) == ("Teammate", maria)
    await twilio.wait_for_messages(2)
    assert twilio.messages[1]["Body"] == MARIA
    thread = await read_conversation(db, conversation_id)
    last = thread.messages[-1]
    assert (last.id, last.author, last.author_name) == (sent["message_id"], "human", "Teammate")
    assert await _sender_user_id(db, sent["message_id"]) == maria
    [event] = _events(thread, "conversation.human_reply")
    assert event["author_name"] == "Teammate"
    assert (event["user_id"], event["source"]) == (maria, "cli")
    # By name, any case.
    again = await _json(db, "note", conversation_id, "Moved to Thursday", "--as", "TEAMMATE")
    assert again["author"] == "Teammate"

    await text_in(service, sid="SMt1", sender=PATIENT, to=FROM_NUMBER, body="Thursday works")
    await asyncio.sleep(0.5)
    assert llm.requests == []
    assert len(twilio.messages) == 2


async def test_reply_names_who_sent_it_and_masks_the_number(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    conversation_id = await _kick(service)

    result = await _cli(db, "reply", conversation_id.upper(), "Running 10 minutes late?")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"sent as Dana to +1 (310) ***-**34 — {conversation_id} is now with a person; the agent "
        f"stays silent until `smsagent handback {conversation_id}`"
    )
    assert "Running" not in result.output
    thread = await read_conversation(db, conversation_id)
    assert thread.messages[-1].author_name == "Dana"
    assert await _sender_user_id(db, thread.messages[-1].id) is None

    # Without --as or $SMSAGENT_OPERATOR, the login name.
    result = await _cli(
        db, "reply", conversation_id, "Still there?", SMSAGENT_OPERATOR=None, LOGNAME="frontdesk"
    )
    assert result.exit_code == 0, result.output
    assert "sent as frontdesk " in result.output
    await twilio.wait_for_messages(3)


async def test_handback_close_and_reopen(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    conversation_id = await _kick(service)
    await _json(db, "reply", conversation_id, "This is Dana.")
    await twilio.wait_for_messages(2)

    back = await _json(db, "handback", conversation_id, "--as", "Dana")
    assert back == {
        "conversation_id": conversation_id,
        "status": "open",
        "mode": "agent",
        "changed": ["mode"],
    }
    llm.script(reply("Let me check Thursday for you."))
    await text_in(service, sid="SMt2", sender=PATIENT, to=FROM_NUMBER, body="Any Thursday?")
    await twilio.wait_for_messages(3)
    assert twilio.messages[2]["Body"] == "Let me check Thursday for you."
    again = await _cli(db, "handback", conversation_id)
    assert again.exit_code == 0, again.output
    assert "was already with the agent" in again.output

    closed = await _json(db, "close", conversation_id)
    assert (closed["status"], closed["changed"]) == ("closed", ["status"])
    reopened = await _json(db, "reopen", conversation_id)
    assert (reopened["status"], reopened["mode"]) == ("open", "agent")
    thread = await read_conversation(db, conversation_id)
    assert _events(thread, "conversation.handed_back") == [{"source": "cli", "author_name": "Dana"}]
    assert [e.type for e in thread.events if e.type.startswith("conversation.")][-2:] == [
        "conversation.closed",
        "conversation.reopened",
    ]

    # A newer thread with the customer is live: the old one stays closed.
    await _json(db, "close", conversation_id)
    newer = await _kick(service)
    for command in (["reopen", conversation_id], ["reply", conversation_id, "Hello again"]):
        refused = await _cli(db, *command)
        assert refused.exit_code == 1, refused.output
        assert f"{newer} is the live thread with this contact; close it first" in refused.output
    assert (await read_conversation(db, conversation_id)).status == "closed"

    # With none live, a reply reopens the thread in a person's hands.
    await _json(db, "close", newer)
    sent = await _json(db, "reply", conversation_id, "Hello again")
    assert (sent["status"], sent["mode"], sent["reopened"]) == ("open", "human", True)


async def test_ids_whole_short_ambiguous_and_unknown(service: Service, db: Database) -> None:
    first = await _kick(service, "(310) 555-0001")
    second = await _kick(service, "(310) 555-0002")
    same = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    common = first[:same]
    unique = first[: len(common) + 1]

    ambiguous = await _cli(db, "close", common.lower())
    assert ambiguous.exit_code == 1
    assert "starts more than one conversation" in ambiguous.output
    assert first in ambiguous.output
    assert second in ambiguous.output

    closed = await _json(db, "close", unique.removeprefix("conv_").lower())
    assert closed["conversation_id"] == first

    for ref in ("conv_ZZZZZZ", "nope!"):
        unknown = await _cli(db, "close", ref)
        assert unknown.exit_code == 1
        assert "no conversation" in unknown.output or "not a conversation id" in unknown.output
    elsewhere = await _cli(db, "close", second, "--workspace", "ws_other")
    assert elsewhere.exit_code == 1
    assert f"no conversation {second} in workspace ws_other" in elsewhere.output
    assert (await read_conversation(db, second)).status == "open"


async def test_an_opted_out_contact_gets_nothing(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    conversation_id = await _kick(service)
    await text_in(service, sid="SMt3", sender=PATIENT, to=FROM_NUMBER, body="STOP")
    await twilio.wait_for_messages(2)  # the opt-out confirmation

    async def opted_out() -> bool:
        return bool((await read_conversation(db, conversation_id)).contact.opted_out)

    await wait_until(opted_out, what="the opt-out")
    messages, jobs = await count_rows(db, "messages"), await count_rows(db, "jobs")

    refused = await _cli(db, "reply", conversation_id, "Are you sure?")

    assert refused.exit_code == 1
    assert "opted out" in refused.output
    assert (await count_rows(db, "messages"), await count_rows(db, "jobs")) == (messages, jobs)
    thread = await read_conversation(db, conversation_id)
    assert thread.mode == "agent"
    assert _events(thread, "conversation.human_reply") == []


async def test_tag_and_untag_the_contact(service: Service, db: Database) -> None:
    conversation_id = await _kick(service)

    tagged = await _json(db, "tag", conversation_id, "vip")
    assert (tagged["tags"], tagged["changed"]) == (["vip"], True)
    human = await _cli(db, "tag", conversation_id, "vip")
    assert human.exit_code == 0, human.output
    assert human.output.strip() == "+1 (310) ***-**34 was already tagged 'vip'"

    untagged = await _json(db, "untag", conversation_id, "vip")
    assert (untagged["tags"], untagged["changed"]) == ([], True)
    human = await _cli(db, "untag", conversation_id, "vip")
    assert human.output.strip() == "+1 (310) ***-**34 was not tagged 'vip'"
    blank = await _cli(db, "tag", conversation_id, "  ")
    assert blank.exit_code == 2

    thread = await read_conversation(db, conversation_id)
    assert thread.contact.tags == []
    assert _events(thread, "contact.tagged") == [
        {"tag": "vip", "source": "cli", "author_name": "Dana"}
    ]
    assert _events(thread, "contact.untagged") == [
        {"tag": "vip", "source": "cli", "author_name": "Dana"}
    ]


async def test_a_note_is_never_sent(service: Service, db: Database, twilio: TwilioStub) -> None:
    conversation_id = await _kick(service)
    await twilio.wait_for_messages(1)
    messages, jobs = await count_rows(db, "messages"), await count_rows(db, "jobs")

    noted = await _json(db, "note", conversation_id, "Prefers calls after 5pm", "--as", "Maria")

    assert (noted["author"], noted["mode"]) == ("Maria", "agent")
    assert (await count_rows(db, "messages"), await count_rows(db, "jobs")) == (messages, jobs)
    thread = await read_conversation(db, conversation_id)
    assert _events(thread, "conversation.note") == [
        {"text": "Prefers calls after 5pm", "author": "Maria", "source": "cli"}
    ]
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1


# --- Against a real `serve` process -----------------------------------------------------------


@pytest.fixture
async def serving(db: Database, llm: ScriptedLLM, tmp_path: Path) -> AsyncIterator[ServeProcess]:
    env = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_FROM_NUMBER": FROM_NUMBER,
        "SMSAGENT_BUSINESS_NAME": "Bright Smiles Dental",
        "SMSAGENT_SEND_WINDOW": "00:00-24:00",
        "SMSAGENT_TURN_QUIET_SECONDS": "0.05",
        "SMSAGENT_LLM_BASE_URL": llm.base_url,
        "SMSAGENT_LLM_MODEL": "scripted-model",
        "SMSAGENT_LLM_MAX_RETRIES": "0",
        "SMSAGENT_LOG_LEVEL": "INFO",
        "SMSAGENT_API_KEY": API_KEY,
        # SQLite: the worker's usual look at the queue each second. PostgreSQL: hardly ever, so
        # a prompt send can only come from the NOTIFY the CLI's enqueue makes.
        "SMSAGENT_WORKER_POLL_SECONDS": "30" if db.schema else "1",
    }
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    serve = ServeProcess(env, tmp_path / "serve.log")
    await serve.start()
    yield serve
    await serve.stop()


async def _text(http: aiohttp.ClientSession, serve: ServeProcess, body: str) -> tuple[str, str]:
    async with http.post(
        f"{serve.base_url}/webhooks/console/sms", json={"from": PATIENT, "body": body}
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return str(answer["conversation_id"]), str(answer["message_id"])


async def _replies(
    http: aiohttp.ClientSession, serve: ServeProcess, conversation_id: str, after: str
) -> list[str]:
    query = {"conversation_id": conversation_id, "after": after}
    async with http.get(f"{serve.base_url}/webhooks/console/replies", params=query) as response:
        state = await response.json()
    # What the console provider took: the pretend handset has it.
    return [r["body"] for r in state["replies"] if r["status"] in ("sent", "delivered")]


async def _wait_replies(
    http: aiohttp.ClientSession,
    serve: ServeProcess,
    conversation_id: str,
    after: str,
    count: int,
    within: float = 8.0,
) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await _replies(http, serve, conversation_id, after)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {count} replies within {within}s")


async def _thread(
    http: aiohttp.ClientSession, serve: ServeProcess, conversation_id: str
) -> dict[str, Any]:
    async with http.get(
        f"{serve.base_url}/v1/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        found: dict[str, Any] = await response.json()
        assert response.status == 200, found
    return found


async def _smsagent(serve: ServeProcess, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webhooks.cli",
        *args,
        cwd=ROOT,
        env=serve.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (out + err).decode()
    return out.decode()


@pytest.mark.slow
async def test_take_over_and_hand_back_while_serve_runs(
    serving: ServeProcess, llm: ScriptedLLM, tmp_path: Path
) -> None:
    llm.script(reply("Hi Sarah! How can I help with your visit?"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        conversation_id, first = await _text(http, serving, "can I move my cleaning?")
        assert await _wait_replies(http, serving, conversation_id, first, 1) == [
            "Hi Sarah! How can I help with your visit?"
        ]

        sent = json.loads(
            await _smsagent(
                serving, "reply", conversation_id, MARIA, "--as", "Maria Lopez", "--json"
            )
        )
        committed = time.monotonic()
        assert sent["mode"] == "human"
        replies = await _wait_replies(http, serving, conversation_id, first, 2)
        delivered_in = time.monotonic() - committed
        assert replies == ["Hi Sarah! How can I help with your visit?", MARIA]
        thread = await _thread(http, serving, conversation_id)
        last = thread["messages"][-1]
        assert (last["author"], last["author_name"]) == ("human", "Maria Lopez")
        assert (last["status"], last["body"]) == ("delivered", MARIA)
        # PostgreSQL polls every 30 s here: only the enqueue's NOTIFY woke the worker.
        assert delivered_in < 5, delivered_in

        _, second = await _text(http, serving, "Thursday at 4 is perfect")
        await asyncio.sleep(3)
        assert await _replies(http, serving, conversation_id, second) == []
        assert len(llm.requests) == 1

        out = await _smsagent(serving, "handback", conversation_id[:14])
        assert f"{conversation_id} is back with the agent" in out
        llm.script(reply("Great, see you Thursday at 4pm!"))
        _, third = await _text(http, serving, "so are we set?")
        assert await _wait_replies(http, serving, conversation_id, third, 1) == [
            "Great, see you Thursday at 4pm!"
        ]
        assert len(llm.requests) == 2

    log = (tmp_path / "serve.log").read_text()
    assert "front desk" not in log  # the person's text never reaches the logs
    assert PATIENT not in log


async def test_a_person_who_takes_over_while_the_model_thinks_is_not_talked_over(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    _, started = await service.kickoff(to=PATIENT, message="Hi Sarah, see you Monday at 3.")
    await twilio.wait_for_messages(1)
    llm.script(hold(reply("Sure, Thursday at 4 is yours!")))
    await service.twilio_inbound("Can I come Thursday instead?", sid="SM" + "d" * 32)
    await llm.wait_for_requests(1)

    result = await _cli(db, "reply", started["conversation_id"], MARIA, "--as", "Maria Lopez")
    assert result.exit_code == 0, result.output
    await twilio.wait_for_messages(2)
    llm.release()

    async def settled() -> bool:
        thread = await read_conversation(db, started["conversation_id"])
        return any(r.outcome == "taken_over" for r in thread.agent_runs)

    await wait_until(settled, what="the turn to give way to the person")
    await asyncio.sleep(0.3)
    assert [m["Body"] for m in twilio.messages] == ["Hi Sarah, see you Monday at 3.", MARIA]
    thread = await read_conversation(db, started["conversation_id"])
    assert thread.mode == "human"
    # The person answered the customer's text: handing back later does not answer it again.
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            waiting = await conn.execute(
                text(
                    "SELECT COUNT(*) FROM messages "
                    "WHERE direction = 'inbound' AND handled_at IS NULL"
                )
            )
            assert waiting.scalar_one() == 0
    finally:
        await engine.dispose()
