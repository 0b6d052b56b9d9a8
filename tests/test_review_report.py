"""`smsagent report`: the seeded week's figures, counted by hand, on both databases; the JSON,
the chart, and what people see on a terminal or in a pipe."""

from __future__ import annotations

import asyncio
import json
import struct
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from storage.engine import create_engine
from storage.report import Day, Failure, Reason, Report, build_report, calendar, percentile
from tests.harness import Database
from tests.review_seed import FIXED_NOW, RAPID_ROOTER, ZONE, review_env, seed_database, week
from tests.snapshots import check, plain
from tests.terminal import run_cli
from webhooks.review.report import report

WEEK_AGO = FIXED_NOW - timedelta(days=7)


async def _report(
    db: Database,
    *,
    since: datetime = WEEK_AGO,
    until: datetime = FIXED_NOW,
    workspace_id: str | None = None,
) -> Report:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return await build_report(
                conn, since=since, until=until, zone=ZONE, workspace_id=workspace_id
            )
    finally:
        await engine.dispose()


async def _cli(db: Database, *args: str) -> Result:
    # The command runs its own event loop, so it is driven from a thread.
    return await asyncio.to_thread(CliRunner().invoke, report, list(args), env=review_env(db))


async def test_the_week_in_figures(db: Database) -> None:
    await seed_database(db)

    found = await _report(db)

    # 18 threads had texts in the week; one of them (Jennifer's) started 12 days before it, and
    # Nancy's thread of 10 days before is left out.
    assert (found.conversations_started, found.conversations_active) == (17, 18)
    assert (found.inbound, found.outbound) == (25, 31)
    assert found.by_author == {"agent": 18, "human": 1, "system": 5, "api": 7}
    # Confirmed: Sarah (the agent) and David (the fast path); moved: Michael (rescheduled) and
    # Brian (asked of the office); canceled: Emily; hand-offs: the billing question, Thomas's
    # x-rays, Steven's flood, Mark's quote; opted out: James.
    outcomes = (
        found.confirmations,
        found.moves,
        found.cancellations,
        found.handoffs,
        found.opt_outs,
    )
    assert outcomes == (2, 2, 1, 4, 1)
    assert found.handoff_reasons == (
        Reason("the agent could not answer", 2),
        Reason("billing question", 1),
        Reason("emergency: flooding", 1),
    )
    # Patricia's reply has no receipt yet and the scheduled text is not sent: 28 of 30.
    assert (found.delivered, found.undelivered, found.failed) == (28, 1, 1)
    assert found.delivery_rate == pytest.approx(28 / 30)
    assert found.failures == (
        Failure("30003", "Unreachable destination handset", 1),
        Failure("30007", "Carrier violation", 1),
    )
    # 31 texts, two of them two segments long (Lucía's first reply, Kevin's first), 0.79¢ each.
    assert found.segments == 33
    assert found.cost_cents == pytest.approx(26.07)
    # 25 runs, one before the week; of the 24, three are the fast path's (STOP, Y, the flood).
    assert (found.runs, found.model_runs) == (24, 21)
    assert (found.prompt_tokens, found.completion_tokens) == (50_535, 1_340)
    # 20 latencies (the timed-out run took none): the 10th and the 19th.
    assert (found.latency_p50_ms, found.latency_p95_ms) == (2760, 9120)
    # Patricia's timeout, Thomas's no reply, Mark's step limit; Jennifer's claim check.
    assert (found.fallbacks, found.corrections) == (3, 1)
    assert found.fallback_rate == pytest.approx(3 / 21)
    assert found.correction_rate == pytest.approx(1 / 21)


async def test_every_day_of_the_week_in_new_york(db: Database) -> None:
    await seed_database(db)

    found = await _report(db)

    # Robert's text at 19:45 and the toilet at 20:22 fall on the day they were sent in New
    # York, not on the next UTC day.
    assert found.days == (
        Day(date(2026, 11, 17), inbound=1, outbound=2, confirmations=1),
        Day(date(2026, 11, 18), inbound=4, outbound=5, moves=1),
        Day(date(2026, 11, 19), inbound=3, outbound=4, cancellations=1),
        Day(date(2026, 11, 20), inbound=4, outbound=4),
        Day(date(2026, 11, 21), inbound=4, outbound=4, handoffs=2, opt_outs=1),
        Day(date(2026, 11, 22), inbound=2, outbound=3, moves=1),
        Day(date(2026, 11, 23), inbound=5, outbound=7, confirmations=1, handoffs=1),
        Day(date(2026, 11, 24), inbound=2, outbound=2, handoffs=1),
    )
    assert [d.day for d in found.days] == week()


async def test_one_workspace(db: Database) -> None:
    await seed_database(db)

    found = await _report(db, workspace_id=RAPID_ROOTER)

    assert (found.conversations_started, found.inbound, found.outbound) == (5, 7, 8)
    assert found.by_author == {"agent": 5, "human": 0, "system": 2, "api": 1}
    assert (found.moves, found.handoffs, found.confirmations) == (1, 2, 0)
    assert (found.delivered, found.undelivered, found.failed) == (8, 0, 0)
    assert (found.runs, found.model_runs, found.fallbacks) == (7, 6, 1)
    assert (found.latency_p50_ms, found.latency_p95_ms) == (2480, 14800)


async def test_a_longer_period_takes_in_the_older_threads(db: Database) -> None:
    await seed_database(db)

    found = await _report(db, since=FIXED_NOW - timedelta(days=14))

    assert (found.conversations_started, found.conversations_active) == (19, 19)
    assert (found.inbound, found.outbound) == (26, 34)
    assert (found.confirmations, found.runs, found.model_runs) == (3, 25, 21)
    assert len(found.days) == 15


async def test_a_quiet_period_has_days_but_no_rates(db: Database) -> None:
    await seed_database(db)

    found = await _report(
        db,
        since=datetime(2026, 1, 5, 5, tzinfo=UTC),
        until=datetime(2026, 1, 7, 5, tzinfo=UTC),
    )

    assert found.days == (Day(date(2026, 1, 5)), Day(date(2026, 1, 6)))
    assert (found.inbound, found.outbound, found.runs) == (0, 0, 0)
    assert found.delivery_rate is None
    assert found.fallback_rate is None
    assert found.latency_p50_ms is None


def test_days_follow_the_clock_across_a_dst_change() -> None:
    # New York fell back on 2026-11-01: that day is 25 hours long.
    days = calendar(
        datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 2, 17, tzinfo=UTC), ZONE
    )
    assert [d for d, _ in days] == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    assert days[1][1] - days[0][1] == timedelta(hours=25)
    assert days[0][1] == datetime(2026, 11, 1, 4, tzinfo=UTC)


def test_percentiles_are_measured_values() -> None:
    assert percentile([], 0.5) is None
    assert percentile([700], 0.95) == 700
    assert percentile([100, 200, 300, 400], 0.5) == 200
    assert percentile(list(range(1, 101)), 0.95) == 95


async def test_json_for_scripts(db: Database) -> None:
    await seed_database(db)

    result = await _cli(db, "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {
        "period",
        "conversations",
        "texts",
        "outcomes",
        "handoff_reasons",
        "delivery",
        "cost",
        "agent",
        "daily",
    }
    assert body["period"] == {
        "since": "2026-11-17T17:00:00+00:00",
        "until": "2026-11-24T17:00:00+00:00",
        "zone": ZONE,
        "workspace_id": None,
    }
    assert body["outcomes"] == {
        "confirmations": 2,
        "moves": 2,
        "cancellations": 1,
        "handoffs": 4,
        "opt_outs": 1,
    }
    assert body["delivery"]["rate"] == 0.9333
    assert body["delivery"]["failures"][0] == {
        "error_code": "30003",
        "error_message": "Unreachable destination handset",
        "count": 1,
    }
    assert body["cost"] == {"segments": 33, "cost_cents": 26.07}
    assert body["agent"]["latency_ms"] == {"p50": 2760, "p95": 9120}
    assert body["agent"]["fallback_rate"] == 0.1429
    assert body["handoff_reasons"][0] == {"reason": "the agent could not answer", "count": 2}
    assert body["daily"][0] == {
        "day": "2026-11-17",
        "inbound": 1,
        "outbound": 2,
        "confirmations": 1,
        "moves": 0,
        "cancellations": 0,
        "handoffs": 0,
        "opt_outs": 0,
    }
    assert len(body["daily"]) == 8


async def test_periods_as_people_write_them(db: Database) -> None:
    await seed_database(db)

    since_date = await _cli(db, "--since", "2026-11-23", "--until", "2026-11-24", "--json")
    last_day = await _cli(db, "--since", "24h", "--json")
    rooter = await _cli(db, "--since", "2w", "--workspace", RAPID_ROOTER, "--json")

    # A date is that day's midnight in New York; the end is not included.
    monday = json.loads(since_date.stdout)
    assert monday["period"]["since"] == "2026-11-23T05:00:00+00:00"
    assert [d["day"] for d in monday["daily"]] == ["2026-11-23"]
    assert monday["texts"] == {
        "received": 5,
        "sent": 7,
        "by_author": {"agent": 3, "human": 0, "system": 2, "api": 2},
    }
    assert json.loads(last_day.stdout)["texts"]["received"] == 6
    assert json.loads(rooter.stdout)["period"]["workspace_id"] == RAPID_ROOTER


async def test_plain_lines_when_piped(db: Database) -> None:
    await seed_database(db)

    result = await _cli(db)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "period: 2026-11-17 12:00 to 2026-11-24 12:00 America/New_York"
    for expected in (
        "texts received: 25",
        "replies by the agent: 18",
        "hand-offs: 4",
        "delivery rate: 93.3% (28 of 30)",
        "SMS cost: $0.26",
        "turn latency p95: 9.1 s",
        "fallback rate: 14.3% (3 of 21)",
        "correction rate: 4.8% (1 of 21)",
        "  30007 Carrier violation                1",
        "  2026-11-23         5     7          1      0         0          1         0",
    ):
        assert expected in lines
    assert "\x1b" not in result.stdout
    assert not set("│╭─▇") & set(result.stdout)


async def test_mistakes_are_said_plainly(db: Database) -> None:
    await seed_database(db)

    bad_since = await _cli(db, "--since", "last tuesday")
    backwards = await _cli(db, "--since", "1d", "--until", "2d")
    nowhere = await _cli(db, "--workspace", "ws_01KZ3YS6R0H3SA9JCKJ1JKWNJX")

    assert bad_since.exit_code == 2
    assert "Invalid value for --since: 'last tuesday'" in bad_since.output
    assert backwards.exit_code == 2
    assert "is not before the end of the period" in backwards.output
    assert nowhere.exit_code == 1
    assert "no workspace ws_01KZ3YS6R0H3SA9JCKJ1JKWNJX" in nowhere.output
    assert "Traceback" not in bad_since.output + backwards.output + nowhere.output


async def test_the_chart(db: Database, tmp_path: Path) -> None:
    await seed_database(db)
    chart = tmp_path / "week.png"

    result = await _cli(db, "--png", str(chart), "--json")

    assert result.exit_code == 0, result.output
    assert f"wrote the chart to {chart}" in result.stderr
    assert json.loads(result.stdout)["texts"]["sent"] == 31
    head = chart.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    assert struct.unpack(">II", head[16:24]) == (1200, 700)
    with Image.open(chart) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 700)
        # Not a blank canvas: bars in several colours.
        assert len(image.convert("RGB").getcolors(maxcolors=100_000) or []) > 6


async def test_the_chart_needs_a_writable_place(db: Database, tmp_path: Path) -> None:
    await seed_database(db)

    result = await _cli(db, "--png", str(tmp_path / "missing" / "week.png"))

    assert result.exit_code == 1
    assert "cannot write" in result.output


# What people see: a terminal 80 and 160 columns wide, and a pipe (SQLite; the figures are
# checked on PostgreSQL above).


@pytest.mark.parametrize(("name", "columns"), [("80", 80), ("160", 160), ("piped", None)])
async def test_snapshots(sqlite_db: Database, name: str, columns: int | None) -> None:
    await seed_database(sqlite_db)

    code, out, err = await asyncio.to_thread(
        run_cli, ["report"], review_env(sqlite_db), columns=columns
    )

    assert code == 0, err
    shown = plain(out)
    check(f"report_{name}", shown)
    widest = max(len(line) for line in shown.splitlines())
    assert widest <= (columns or 100)
    if columns is None:
        assert "\x1b" not in out
    else:
        assert "╭─ Agent" in shown
