"""`smsagent transcripts list | show | search | export` against a running service's database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply
from storage.engine import create_engine
from tests.fakes.twilio_server import TwilioStub
from tests.harness import PATIENT, Database, Service
from tests.terminal import run_cli
from tests.test_cli import _conversation_with_a_turn, _env
from tests.test_kickoff import KICKOFF
from webhooks.cli import main


async def _cli(db: Database, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=_env(db))


async def _ok(db: Database, *args: str) -> str:
    result = await _cli(db, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def _two_threads(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> tuple[str, str]:
    """Sarah's thread (tagged by the agent) and a second customer's."""
    first = await _conversation_with_a_turn(service, llm, twilio)
    llm.script(reply("Sure, a plumber can come Thursday."))
    await service.twilio_inbound(
        "Is the leaking faucet visit still on?", sender="+14155550199", sid="SM" + "7" * 32
    )
    await twilio.wait_for_messages(3)
    found = json.loads(await _ok(db, "transcripts", "list", "--json"))
    second = next(t["id"] for t in found if t["contact_phone"] == "+14155550199")
    return first, second


async def test_list_filters_by_phone_in_any_format_tag_text_and_state(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    first, second = await _two_threads(service, llm, twilio, db)

    def ids(output: str) -> list[str]:
        return [t["id"] for t in json.loads(output)]

    everything = ids(await _ok(db, "transcripts", "list", "--json"))
    assert everything == [second, first]  # newest activity first
    assert ids(await _ok(db, "transcripts", "list", "--json", "--phone", "(310) 555-1234")) == [
        first
    ]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--phone", "0199")) == [second]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--tag", "prefers-mornings")) == [
        first
    ]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--text", "faucet")) == [second]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--text", "leak")) == [second]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--text", "mornings best")) == [first]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--mode", "human")) == []
    assert ids(await _ok(db, "transcripts", "list", "--json", "--needs-person")) == []
    assert ids(await _ok(db, "transcripts", "list", "--json", "--since", "1h")) == [second, first]
    assert ids(await _ok(db, "transcripts", "list", "--json", "--until", "2020-01-01")) == []
    assert ids(await _ok(db, "transcripts", "list", "--json", "--not-opted-out")) == [
        second,
        first,
    ]

    bad = await _cli(db, "transcripts", "list", "--phone", "12")
    assert bad.exit_code == 2
    assert "last 4 digits" in bad.output
    bad = await _cli(db, "transcripts", "list", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "give a span" in bad.output


async def test_short_ids_name_a_thread_when_they_are_unique(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    first, second = await _two_threads(service, llm, twilio, db)
    # Ids sort by time: they share their start; the end tells them apart.
    common = 0
    while first[common] == second[common]:
        common += 1
    short = first[: common + 1]

    thread = json.loads(await _ok(db, "transcripts", "show", short, "--json"))
    assert thread["id"] == first
    without_prefix = first[len("conv_") : common + 1].upper()
    thread = json.loads(await _ok(db, "transcripts", "show", without_prefix, "--json"))
    assert thread["id"] == first

    ambiguous = await _cli(db, "transcripts", "show", first[:common])
    assert ambiguous.exit_code == 1
    assert "starts more than one conversation" in ambiguous.output
    assert first in ambiguous.output
    assert second in ambiguous.output
    unknown = await _cli(db, "transcripts", "show", "conv_zzzz")
    assert unknown.exit_code == 1
    assert "no conversation conv_zzzz" in unknown.output
    odd = await _cli(db, "transcripts", "show", "conv'; drop table--")
    assert odd.exit_code == 1
    assert "not a conversation id" in odd.output


async def test_search_uses_the_full_text_index_and_marks_the_words(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    _, second = await _two_threads(service, llm, twilio, db)

    hits = json.loads(await _ok(db, "transcripts", "search", "faucet", "visit", "--json"))
    assert [(h["conversation_id"], h["matched"]) for h in hits] == [(second, ["faucet", "visit"])]
    assert hits[0]["snippet"] == "Is the leaking faucet visit still on?"
    assert hits[0]["direction"] == "inbound"
    # The last word may be the start of one; the others are whole words.
    assert len(json.loads(await _ok(db, "transcripts", "search", "morn", "--json"))) == 2
    assert json.loads(await _ok(db, "transcripts", "search", "morn", "best", "--json")) == []
    assert json.loads(await _ok(db, "transcripts", "search", "zebra", "--json")) == []
    piped = await _ok(db, "transcripts", "search", "FAUCET")
    assert piped.startswith(second)
    assert "[faucet]" in piped
    nothing = await _cli(db, "transcripts", "search", "!!!")
    assert nothing.exit_code == 2
    assert "at least one word" in nothing.output

    plan = await _plan(db, "faucet")
    assert "messages_fts" in plan or "ix_messages_body_fts" in plan, plan


async def _plan(db: Database, word: str) -> str:
    """How the database answers a search: through the full-text index, not a scan."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                found = await conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT m.id FROM messages_fts JOIN messages m "
                        "ON m.rowid = messages_fts.rowid WHERE messages_fts MATCH :q"
                    ),
                    {"q": f'"{word}"*'},
                )
                return " ".join(str(row[-1]) for row in found)
            # A table this small would be scanned anyway: ask whether the index can answer.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            found = await conn.execute(
                text(
                    "EXPLAIN SELECT id FROM messages WHERE to_tsvector('simple', body) @@ "
                    "to_tsquery('simple', :q)"
                ),
                {"q": f"{word}:*"},
            )
            return " ".join(str(row[0]) for row in found)
    finally:
        await engine.dispose()


async def test_show_raw_gives_the_models_exact_input_and_output(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    first = await _conversation_with_a_turn(service, llm, twilio)

    out = await _ok(db, "transcripts", "show", first, "--raw")
    assert "model call 1 input:" in out
    assert "[system] " in out  # the turn's system prompt, as sent
    assert "[user] mornings are best for me" in out
    assert 'tool_calls=[{"id": ' in out
    assert '"name": "tag_contact"' in out
    assert "[tool] " in out
    assert "model call 1 output:" in out
    assert "[assistant] Noted, mornings it is!" in out

    thread = json.loads(await _ok(db, "transcripts", "show", first, "--json", "--raw"))
    [run] = thread["agent_runs"]
    [call] = run["exchange"]
    assert [m["role"] for m in call["input"]][-1] == "user"
    assert [m["role"] for m in call["output"]] == ["assistant", "tool", "assistant"]
    # Without --raw the run stays small.
    plain = json.loads(await _ok(db, "transcripts", "show", first, "--json"))
    assert plain["agent_runs"][0]["exchange"] is None


async def test_export_writes_jsonl_csv_and_html_whole_threads(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database, tmp_path: Path
) -> None:
    first, second = await _two_threads(service, llm, twilio, db)

    lines = (await _ok(db, "transcripts", "export", "--format", "jsonl")).splitlines()
    threads = [json.loads(line) for line in lines]
    assert [t["id"] for t in threads] == [second, first]
    assert [m["body"] for m in threads[1]["messages"]][1] == "mornings are best for me"
    assert threads[1]["agent_runs"][0]["tool_calls"][0]["name"] == "tag_contact"

    table = list(
        csv.DictReader(io.StringIO(await _ok(db, "transcripts", "export", "--format", "csv")))
    )
    assert len(table) == 5
    assert {r["conversation_id"] for r in table} == {first, second}
    sarah = [r for r in table if r["conversation_id"] == first]
    assert [r["author"] for r in sarah] == ["api", "Sarah Johnson", "agent"]
    assert sarah[0]["body"] == KICKOFF["message"]
    assert sarah[0]["contact_phone"] == PATIENT

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "one.html"
    result = await _cli(
        db, "transcripts", "export", first[:-4], "--format", "html", "--out", str(target)
    )
    assert result.exit_code == 0, result.output
    assert f"wrote 1 conversations to {target}" in result.output
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "mornings are best for me" in page
    assert "tag_contact" in page
    assert "faucet" not in page
    assert [p.name for p in out_dir.iterdir()] == ["one.html"]  # nothing half-written left

    only = await _ok(db, "transcripts", "export", "--format", "jsonl", "--text", "faucet")
    assert [json.loads(line)["id"] for line in only.splitlines()] == [second]


async def test_a_failed_export_leaves_no_file_behind(
    service: Service, db: Database, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "out.jsonl"
    result = await _cli(db, "transcripts", "export", "conv_nothere", "--out", str(target))
    assert result.exit_code == 1
    assert "no conversation conv_nothere" in result.output
    assert list(out_dir.iterdir()) == []


async def test_watch_prints_threads_again_as_texts_arrive(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    first = await _conversation_with_a_turn(service, llm, twilio)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webhooks.cli",
        "transcripts",
        "list",
        "--watch",
        "--every",
        "0.2",
        env={**_subprocess_env(db)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.decode().startswith(first)
        llm.script(reply("See you then!"))
        await service.twilio_inbound("thanks, see you", sid="SM" + "8" * 32)
        again = await asyncio.wait_for(process.stdout.readline(), 30)
        assert again.decode().startswith(first)
        assert "thanks, see you" in again.decode() or "See you then!" in again.decode()
    finally:
        process.terminate()
        await process.wait()


def _subprocess_env(db: Database) -> dict[str, str]:
    return {**os.environ, **_env(db), "PYTHONUNBUFFERED": "1"}


async def test_missing_older_and_newer_databases_are_clear_errors(
    service: Service, db: Database
) -> None:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        newer = await _cli(db, "transcripts", "list")
        assert newer.exit_code == 1
        assert "newer than this smsagent knows" in newer.output
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0010'"))
        older = await _cli(db, "transcripts", "list")
        assert older.exit_code == 1
        assert "older than this smsagent's" in older.output
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        empty = await _cli(db, "transcripts", "list")
        assert empty.exit_code == 1
        assert "holds no smsagent data" in empty.output
    finally:
        await engine.dispose()


async def test_ids_stay_whole_on_a_terminal_of_80_columns(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    first = await _conversation_with_a_turn(service, llm, twilio)
    code, out, err = await asyncio.to_thread(
        run_cli, ["transcripts", "list"], _subprocess_env(db), columns=80
    )
    assert code == 0, err
    assert first in out  # whole, at 80 columns
