"""What batching and lanes must not weaken: a bad text fails alone, a crash mid-batch loses no
acknowledged text, two processes never run one thread's turns at once nor send twice, and a
ready reply never waits behind turns waiting on the model."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from sqlalchemy import text

from agent.deps import Nudge
from agent.evals.scripted import JSONDict, ScriptedLLM, Step, hold, reply
from agent.pacing import Places, back_to_work, wait_elsewhere
from agent.worker import LaneSpec, Worker
from storage import jobs
from storage.batching import GroupCommit
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.inbound import InboundRow, Stored, store_inbound
from storage.jobs import Lease
from storage.migrate import migrate
from storage.raw import Dialect, Plan, PlanQueue, WriterGate, run_plan
from storage.types import utcnow
from storage.workspaces import ensure_workspace
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PUBLIC_URL, Database, post_signed, wait_until
from tests.processes import ServeProcess


def _row(number: int, *, workspace_id: str = "ws_test") -> InboundRow:
    return InboundRow(
        workspace_id=workspace_id,
        provider="twilio",
        provider_message_id="SM" + secrets.token_hex(16),
        from_number=f"+1310555{number:04d}",
        to_number=FROM_NUMBER,
        body="see you then",
        media_urls=(),
        turn_delay_seconds=60,
        max_attempts=6,
    )


@pytest.fixture
async def engine_sessions(db: Database) -> AsyncIterator[tuple[Any, SessionFactory]]:
    engine = create_engine(db.url, schema=db.schema)
    await migrate(engine, schema=db.schema)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        await ensure_workspace(
            session=session,
            workspace_id="ws_test",
            name="t",
            business_name="T",
            timezone="UTC",
            vertical="generic",
            api_key_hash=None,
        )
    yield engine, sessions
    await engine.dispose()


async def _scalar(engine: Any, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_a_bad_text_in_a_batch_fails_only_its_own_webhook(
    engine_sessions: tuple[Any, SessionFactory],
) -> None:
    engine, _ = engine_sessions
    writer: GroupCommit[InboundRow, Stored] = GroupCommit(
        engine, store_inbound, name="test", linger_seconds=0.02
    )
    writer.start()
    try:
        rows = [_row(i) for i in range(12)]
        rows[5] = _row(5, workspace_id="ws_nowhere")  # violates the workspace foreign key
        results = await asyncio.gather(
            *(writer.submit(row) for row in rows), return_exceptions=True
        )
    finally:
        await writer.stop()

    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [5]
    stored = [r for r in results if isinstance(r, Stored)]
    assert len({s.message_id for s in stored}) == 11
    assert not any(s.duplicate for s in stored)
    assert await _scalar(engine, "SELECT count(*) FROM messages") == 11
    assert await _scalar(engine, "SELECT count(*) FROM jobs WHERE kind = 'turn'") == 11
    # Nothing half-written for the bad one: no thread, no contact under the missing workspace.
    assert await _scalar(engine, "SELECT count(*) FROM conversations") == 11


async def test_concurrent_texts_share_transactions_and_retries_change_nothing(
    engine_sessions: tuple[Any, SessionFactory],
) -> None:
    engine, _ = engine_sessions
    writer: GroupCommit[InboundRow, Stored] = GroupCommit(engine, store_inbound, name="test")
    writer.start()
    try:
        rows = [_row(i % 20) for i in range(100)]
        first = await asyncio.gather(*(writer.submit(row) for row in rows))
        again = await asyncio.gather(*(writer.submit(row) for row in rows[:10]))
    finally:
        await writer.stop()

    assert writer.batches < 30  # 110 texts, far fewer commits
    assert not any(s.duplicate for s in first)
    assert all(s.duplicate for s in again)
    assert [s.message_id for s in again] == [s.message_id for s in first[:10]]
    assert await _scalar(engine, "SELECT count(*) FROM messages") == 100
    # Twenty customers: twenty threads, each with one waiting turn however many texts came.
    assert await _scalar(engine, "SELECT count(*) FROM conversations") == 20
    assert await _scalar(engine, "SELECT count(*) FROM jobs WHERE status = 'queued'") == 20


async def test_a_ready_reply_is_not_delayed_by_queued_turns(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service()
    llm.default = hold(reply("Thanks, noted."))
    customers = [f"+1310555{2000 + i:04d}" for i in range(40)]
    for i, number in enumerate(customers):
        status, _, _ = await service.twilio_inbound(
            "can I move my appointment?", sid=f"SM{i:032d}", sender=number
        )
        assert status == 200
    await wait_until(lambda: _true(llm.held == 40), within=15, what="40 turns with the model")

    started = time.perf_counter()
    status, _ = await service.kickoff(to="(310) 555-9999", message="Your invoice is ready.")
    assert status == 201
    await twilio.wait_for_messages(1, timeout=5)
    assert time.perf_counter() - started < 1.0
    assert llm.held == 40  # the turns are still waiting on the model
    assert twilio.messages[0]["Body"] == "Your invoice is ready."

    llm.release(40)
    await twilio.wait_for_messages(41, timeout=15)
    assert sorted(m["To"] for m in twilio.messages[1:]) == sorted(customers)


async def _true(value: bool) -> bool:
    return value


def _serve_env(db: Database, llm: ScriptedLLM, twilio: TwilioStub) -> dict[str, str]:
    env = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_FROM_NUMBER": FROM_NUMBER,
        "SMSAGENT_TURN_QUIET_SECONDS": "0.05",
        "SMSAGENT_WORKER_POLL_SECONDS": "0.2",
        "SMSAGENT_JOB_LEASE_SECONDS": "2",
        "SMSAGENT_LLM_MAX_RETRIES": "0",
        "SMSAGENT_LOG_LEVEL": "WARNING",
        "SMSAGENT_SMS_PROVIDER": "twilio",
        "SMSAGENT_PUBLIC_URL": PUBLIC_URL,
        "SMSAGENT_TWILIO_API_URL": twilio.base_url,
        "SMSAGENT_TWILIO_ACCOUNT_SID": twilio.account_sid,
        "SMSAGENT_TWILIO_AUTH_TOKEN": twilio.auth_token,
        "SMSAGENT_LLM_BASE_URL": llm.base_url,
        "SMSAGENT_LLM_MODEL": "scripted-model",
    }
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    return env


def _text(i: int, number: str) -> dict[str, str]:
    return {"MessageSid": f"SM{i:032d}", "From": number, "To": FROM_NUMBER, "Body": f"msg {i}"}


async def _post(http: aiohttp.ClientSession, base: str, params: dict[str, str], token: str) -> int:
    status, _ = await post_signed(
        http,
        f"{base}/webhooks/twilio/sms",
        params,
        auth_token=token,
        signed_url=f"{PUBLIC_URL}/webhooks/twilio/sms",
    )
    return status


def _sent_message_ids(twilio: TwilioStub) -> list[str]:
    return [parse_qs(urlsplit(m["StatusCallback"]).query)["message_id"][0] for m in twilio.messages]


@pytest.fixture
async def processes() -> AsyncIterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        await process.stop()


@pytest.mark.slow
async def test_a_crash_mid_batch_loses_no_acknowledged_text(
    db: Database,
    llm: ScriptedLLM,
    twilio: TwilioStub,
    processes: list[ServeProcess],
    tmp_path: Path,
) -> None:
    env = _serve_env(db, llm, twilio)
    first = ServeProcess(env, tmp_path / "serve-1.log")
    processes.append(first)
    await first.start()
    texts = [_text(i, f"+1310555{3000 + i % 60:04d}") for i in range(400)]
    acknowledged: set[str] = set()
    enough = asyncio.Event()
    pending = list(reversed(texts))

    async def client(http: aiohttp.ClientSession) -> None:
        while pending:
            params = pending.pop()
            try:
                if await _post(http, first.base_url, params, twilio.auth_token) == 200:
                    acknowledged.add(params["MessageSid"])
                    if len(acknowledged) >= 100:
                        enough.set()
            except aiohttp.ClientError:
                return  # the process is gone; the provider will retry this one

    async def crash() -> None:
        await enough.wait()
        await first.kill()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(crash(), *(client(http) for _ in range(32)))
    assert 100 <= len(acknowledged) < len(texts)  # killed in the middle of the stream

    second = ServeProcess(env, tmp_path / "serve-2.log")
    processes.append(second)
    await second.start()
    engine = create_engine(db.url, schema=db.schema)
    try:
        stored = await _provider_ids(engine)
        assert acknowledged <= stored  # every acknowledged text survived the crash
        async with aiohttp.ClientSession() as http:
            # The provider retries whatever it got no 200 for; retries of stored ones are no-ops.
            for params in texts:
                if params["MessageSid"] not in acknowledged:
                    assert await _post(http, second.base_url, params, twilio.auth_token) == 200
        assert await _provider_ids(engine) == {t["MessageSid"] for t in texts}
        assert await _scalar(engine, "SELECT count(*) FROM messages WHERE direction = 'inbound'")

        await _all_answered(engine)
        await asyncio.sleep(1.0)
    finally:
        await engine.dispose()
    sent = _sent_message_ids(twilio)
    assert len(sent) == len(set(sent))  # no reply went out twice
    assert {m["To"] for m in twilio.messages} == {t["From"] for t in texts}


async def _all_answered(engine: Any) -> None:
    async def done() -> bool:
        unanswered = (
            "SELECT count(*) FROM messages WHERE direction = 'inbound' AND handled_at IS NULL"
        )
        return await _scalar(engine, unanswered) == 0

    await wait_until(done, within=60, what="every text to be answered")


async def _provider_ids(engine: Any) -> set[str]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT provider_message_id FROM messages WHERE direction = 'inbound'")
        )
        return {str(row[0]) for row in result}


@pytest.mark.slow
async def test_two_processes_never_run_two_turns_of_one_thread_at_once(
    db: Database,
    llm: ScriptedLLM,
    twilio: TwilioStub,
    processes: list[ServeProcess],
    tmp_path: Path,
) -> None:
    if db.schema is None:
        pytest.skip("several processes share one database on PostgreSQL only")
    think = 0.3
    calls: dict[str, list[float]] = defaultdict(list)

    def timed(request: JSONDict) -> Step:
        # The thread is the customer of its newest text; a reply sent after that text (the
        # turn before, committed once the text had arrived) may come after it in the history.
        said = [m for m in request["messages"] if m.get("role") == "user"]
        calls[str(said[-1].get("content", "")).split()[0]].append(time.monotonic())
        return reply("Got it, thanks!").delayed(think)

    llm.default = reply("unused")
    for _ in range(200):
        llm.script(timed)
    env = _serve_env(db, llm, twilio)
    pair = [ServeProcess(env, tmp_path / f"serve-{i}.log") for i in range(2)]
    processes.extend(pair)
    for process in pair:
        await process.start()

    customers = [f"+1310555{4000 + i:04d}" for i in range(10)]
    async with aiohttp.ClientSession() as http:
        for round_ in range(4):
            posts = []
            for c, number in enumerate(customers):
                target = pair[(c + round_) % 2]
                params = {
                    "MessageSid": f"SM{round_:02d}{c:030d}",
                    "From": number,
                    "To": FROM_NUMBER,
                    "Body": f"cust{c:02d} text {round_}",
                }
                posts.append(_post(http, target.base_url, params, twilio.auth_token))
            assert set(await asyncio.gather(*posts)) == {200}
            await asyncio.sleep(0.25)

    engine = create_engine(db.url, schema=db.schema)
    try:
        await _all_answered(engine)
        await asyncio.sleep(1.0)
    finally:
        await engine.dispose()
    for customer, starts in calls.items():
        starts.sort()
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(gap >= think * 0.9 for gap in gaps), (customer, gaps)
    sent = _sent_message_ids(twilio)
    assert len(sent) == len(set(sent))  # no reply went out twice
    assert {m["To"] for m in twilio.messages} == set(customers)


def test_a_nudge_wakes_only_lanes_that_would_look_later_and_run_its_kind() -> None:
    nudge = Nudge()
    turns, sends = nudge.subscribe(("turn",)), nudge.subscribe(("send",))
    turns.looks_at = sends.looks_at = 100.0  # both idle until loop time 100

    nudge("turn", due_at=101.5)  # a text's turn, due after the quiet window
    assert not turns.event.is_set()
    assert not sends.event.is_set()
    nudge("turn", due_at=99.0)  # due before the lane would look
    assert turns.event.is_set()
    assert not sends.event.is_set()
    nudge("send")  # due now
    assert sends.event.is_set()

    busy = nudge.subscribe(("turn",))  # not idle: it looks again by itself, but a nudge counts
    nudge("turn", due_at=1e9)
    assert busy.event.is_set()


async def test_a_rush_of_texts_is_reported_until_it_ends(
    engine_sessions: tuple[Any, SessionFactory],
) -> None:
    engine, _ = engine_sessions
    writer: GroupCommit[InboundRow, Stored] = GroupCommit(engine, store_inbound, name="test")
    writer.start()
    try:
        assert not writer.busy()
        await asyncio.gather(*(writer.submit(_row(i)) for i in range(80)))
        assert writer.busy(per_second=200, window_seconds=0.25)
        await asyncio.sleep(0.3)
        # The window is quiet again, but a rush is taken to last a little longer.
        assert writer.busy(per_second=200, window_seconds=0.25, linger_seconds=1.0)
        assert not writer.busy(per_second=200, window_seconds=0.25, linger_seconds=0.2)
    finally:
        await writer.stop()


class _Recorder:
    """A job handler that notes when each job started, and finishes it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.started: list[float] = []

    async def run(self, job: Lease) -> None:
        self.started.append(time.monotonic())
        async with self.engine.begin() as conn:
            await jobs.finish(conn=conn, lease=job)

    async def exhausted(self, job: Lease, error: str) -> None:
        raise AssertionError(error)


async def test_a_worker_yielding_to_a_rush_still_runs_every_job_at_a_trickle(
    engine_sessions: tuple[Any, SessionFactory],
) -> None:
    engine, _ = engine_sessions
    async with engine.begin() as conn:
        for i in range(10):
            await run_plan(
                conn, jobs.enqueue_plan(jobs.dialect_of(conn), kind="chore", key=f"chore:{i}")
            )
    recorder = _Recorder(engine)
    worker = Worker(
        engine=engine,
        handlers={"chore": recorder},
        lanes=[LaneSpec("chores", ("chore",), concurrency=100, batch=100)],
        nudge=Nudge(),
        lease_seconds=30,
        poll_seconds=0.2,
        yield_to=lambda: True,  # texts pouring in the whole time
        trickle_per_second=20,
    )
    running = asyncio.create_task(worker.run())
    try:

        async def all_ran() -> bool:
            return len(recorder.started) == 10

        await wait_until(all_ran, within=10, what="every job to run")
    finally:
        await worker.stop()
        await running

    # Every job ran, one at a time at about the trickle's pace, not the batch of 100 at once.
    spread = recorder.started[-1] - recorder.started[0]
    assert spread >= 9 / 20 * 0.8
    assert await _scalar(engine, "SELECT count(*) FROM jobs WHERE status = 'done'") == 10


async def test_the_writer_gate_lets_a_waiting_webhook_go_before_queued_background_work() -> None:
    gate = WriterGate()
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.turn(urgent=False):
            await release.wait()

    async def waiter(name: str, *, urgent: bool) -> None:
        async with gate.turn(urgent=urgent):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(waiter(f"turn-{i}", urgent=False)) for i in range(3)]
    waiting.append(asyncio.create_task(waiter("webhook", urgent=True)))
    cancelled = asyncio.create_task(waiter("gone", urgent=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, *waiting)

    assert order == ["webhook", "turn-0", "turn-1", "turn-2"]


async def test_sqlite_plans_share_transactions_and_a_failing_one_fails_alone(
    sqlite_db: Database,
) -> None:
    engine = create_engine(sqlite_db.url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        queue = PlanQueue(engine)

        def note(i: int) -> Plan[int]:
            yield ("INSERT INTO notes (id, body) VALUES (?, ?)", (i, f"note {i}"))
            if i % 7 == 3:
                # Written, then failing: its own row must not stay behind.
                yield ("INSERT INTO notes (id, body) VALUES (?, ?)", (i, "again"))
            found = yield ("SELECT count(*) FROM notes WHERE id = ?", (i,))
            return int(found[0][0])

        results = await asyncio.gather(
            *(queue.submit(note(i), urgent=i % 5 == 0) for i in range(60)),
            return_exceptions=True,
        )
    finally:
        await engine.dispose()

    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [i for i in range(60) if i % 7 == 3]
    assert all(r == 1 for i, r in enumerate(results) if i not in failed)
    # Sixty plans, a handful of transactions.
    assert queue.plans == 60
    assert queue.batches < 10
    reopened = create_engine(sqlite_db.url)
    try:
        kept = [row[0] for row in await _rows(reopened, "SELECT id FROM notes ORDER BY id")]
    finally:
        await reopened.dispose()
    assert kept == [i for i in range(60) if i % 7 != 3]


async def _rows(engine: Any, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def test_turns_back_from_the_model_finish_before_new_ones_start() -> None:
    places = Places(4)  # one of them kept for starting turns
    order: list[str] = []
    model = asyncio.Event()

    async def turn(name: str, *, asks_model: bool) -> None:
        async with places.turn():
            order.append(f"{name} starts")
            if asks_model:
                wait_elsewhere()
                await model.wait()
                await back_to_work()
                order.append(f"{name} back")
            await asyncio.sleep(0.01)
            order.append(f"{name} done")

    thinking = [asyncio.create_task(turn(f"t{i}", asks_model=True)) for i in range(4)]
    await asyncio.sleep(0.005)
    # All four asked the model and gave their places up: new turns start meanwhile.
    assert order == [f"t{i} starts" for i in range(4)]
    fresh = [asyncio.create_task(turn(f"n{i}", asks_model=False)) for i in range(6)]
    await asyncio.sleep(0.005)
    assert [o for o in order if o.startswith("n")] == [f"n{i} starts" for i in range(4)]
    model.set()
    await asyncio.gather(*thinking, *fresh)

    # Once places free up, the turns back from the model take three of every four, and the
    # kept one goes on starting new turns.
    tail = order[8:]
    assert tail.index("t2 back") < tail.index("n5 starts")
    assert tail.index("n4 starts") < tail.index("t3 back")
    assert sum(o.endswith("done") for o in order) == 10


async def test_a_turn_waiting_on_the_model_holds_no_place(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(worker_turns_at_work=1)
    llm.default = hold(reply("Thanks, noted."))
    customers = [f"+1310555{3000 + i:04d}" for i in range(5)]
    for i, number in enumerate(customers):
        status, _, _ = await service.twilio_inbound(
            "can I move my appointment?", sid=f"SM{i:032d}", sender=number
        )
        assert status == 200
    # One place, five turns: each gave it up when it asked the model.
    await wait_until(lambda: _true(llm.held == 5), within=15, what="5 turns with the model")
    llm.release(5)
    await twilio.wait_for_messages(5, timeout=15)
    assert sorted(m["To"] for m in twilio.messages) == sorted(customers)


async def test_the_worker_sweeps_away_jobs_done_long_ago_and_keeps_the_rest(
    engine_sessions: tuple[Any, SessionFactory],
) -> None:
    engine, _ = engine_sessions
    old, recent = datetime(2020, 1, 1, tzinfo=UTC), utcnow() - timedelta(minutes=5)
    dialect = Dialect(engine.dialect.name)
    rows = [
        ("done", old, "old-done-{}", 1500),  # more than one chunk
        ("failed", old, "old-failed-{}", 3),
        ("done", recent, "recent-done-{}", 3),
        ("queued", old, "old-queued-{}", 2),
    ]
    async with engine.begin() as conn:
        for status, when, key, count in rows:
            stamp = dialect.ts(when)
            for i in range(count):
                await conn.execute(
                    text(
                        "INSERT INTO jobs (kind, key, payload, status, run_at, attempts, "
                        "max_attempts, created_at, updated_at) VALUES "
                        "('send', :key, '{}', :status, :at, 1, 6, :at, :at)"
                    ),
                    {"key": key.format(i), "status": status, "at": stamp},
                )
    worker = Worker(
        engine=engine,
        handlers={},
        lanes=[LaneSpec("sends", ("send",), 10, batch=10)],
        nudge=Nudge(),
        lease_seconds=30,
        poll_seconds=0.05,
        keep_done_seconds=3600,
    )
    running = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _swept(engine), within=15, what="old done jobs swept")
    finally:
        await worker.stop()
        await running
    assert await _scalar(engine, "SELECT count(*) FROM jobs WHERE key LIKE 'old-failed-%'") == 3
    assert await _scalar(engine, "SELECT count(*) FROM jobs WHERE key LIKE 'recent-done-%'") == 3


async def _swept(engine: Any) -> bool:
    return await _scalar(engine, "SELECT count(*) FROM jobs WHERE key LIKE 'old-done-%'") == 0
