"""`smsagent transcripts`: read threads back from the database, as a person or as JSON."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner, Result

from agent.evals.scripted import ScriptedLLM, reply, tool_call
from tests.fakes.twilio_server import TwilioStub
from tests.harness import PATIENT, Database, Service, wait_until
from tests.test_kickoff import KICKOFF
from webhooks.cli import main


def _env(db: Database) -> dict[str, str]:
    env = {"SMSAGENT_DATABASE_URL": db.url, "SMSAGENT_TIMEZONE": "America/Denver"}
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    return env


async def _cli(db: Database, *args: str) -> Result:
    # The CLI runs its own event loop, so it is driven from a thread.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=_env(db))


async def _conversation_with_a_turn(service: Service, llm: ScriptedLLM, twilio: TwilioStub) -> str:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(tool_call("tag_contact", tag="prefers-mornings"), reply("Noted, mornings it is!"))
    await service.twilio_inbound("mornings are best for me", sid="SM" + "5" * 32)
    await twilio.wait_for_messages(2)

    async def replied() -> bool:
        thread = await service.conversation(started["conversation_id"])
        return bool(thread["messages"][-1]["status"] == "sent")

    await wait_until(replied, what="the reply to be sent")
    return str(started["conversation_id"])


async def test_show_json_prints_the_whole_thread(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    conversation_id = await _conversation_with_a_turn(service, llm, twilio)

    result = await _cli(db, "transcripts", "show", conversation_id, "--json")

    assert result.exit_code == 0, result.output
    thread = json.loads(result.output)
    assert thread["id"] == conversation_id
    assert thread["contact"]["phone"] == PATIENT
    assert [m["body"] for m in thread["messages"]] == [
        KICKOFF["message"],
        "mornings are best for me",
        "Noted, mornings it is!",
    ]
    assert thread["contact"]["tags"] == ["prefers-mornings"]
    assert thread["agent_runs"][0]["tool_calls"][0]["name"] == "tag_contact"
    assert "contact.tagged" in [e["type"] for e in thread["events"]]


async def test_show_renders_a_readable_timeline(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    conversation_id = await _conversation_with_a_turn(service, llm, twilio)

    result = await _cli(db, "transcripts", "show", conversation_id)

    assert result.exit_code == 0, result.output
    out = result.output
    assert "Sarah Johnson" in out
    assert "mornings are best for me" in out
    assert "tool tag_contact" in out
    assert "contact.tagged" in out
    assert "appointment:  cleaning 2031-03-10 15:00 (scheduled)" in out  # Denver, after DST


async def test_show_says_what_the_claim_check_held_back(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(reply("You're confirmed!"), reply("Great news, you are confirmed!"))
    await service.twilio_inbound("I'll try to come", sid="SM" + "6" * 32)
    await twilio.wait_for_messages(2)

    result = await _cli(db, "transcripts", "show", started["conversation_id"])

    assert result.exit_code == 0, result.output
    assert "agent run: unbacked_claim" in result.output
    assert 'claim check (confirmed): "You\'re confirmed!" → asked_again' in result.output
    assert 'claim check (confirmed): "Great news, you are confirmed!" → withheld' in result.output


async def test_list_shows_the_newest_first(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    conversation_id = await _conversation_with_a_turn(service, llm, twilio)

    result = await _cli(db, "transcripts", "list", "--json")

    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert item["id"] == conversation_id
    assert item["message_count"] == 3
    assert item["contact_name"] == "Sarah Johnson"


async def test_show_an_unknown_id_is_a_clear_error(service: Service, db: Database) -> None:
    result = await _cli(db, "transcripts", "show", "conv_nope")
    assert result.exit_code == 1
    assert "no conversation conv_nope" in result.output


def test_a_missing_database_is_a_clear_error(tmp_path: object) -> None:
    result = CliRunner().invoke(
        main,
        ["transcripts", "list"],
        env={"SMSAGENT_DATABASE_URL": f"sqlite:///{tmp_path}/absent.db"},
    )
    assert result.exit_code == 1
    assert "no database at" in result.output


def test_bad_configuration_names_the_variable() -> None:
    result = CliRunner().invoke(
        main, ["transcripts", "list"], env={"SMSAGENT_SMS_PROVIDER": "twilio"}
    )
    assert result.exit_code == 1
    assert "SMSAGENT_TWILIO_ACCOUNT_SID" in result.output
