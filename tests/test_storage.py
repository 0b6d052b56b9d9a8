"""The durable job queue and the message invariants, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

import pytest

from storage import jobs, messages
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.inbound import InboundRow, store_inbound
from storage.jobs import Lease, dialect_of
from storage.migrate import migrate
from storage.models import JobStatus, MessageStatus
from storage.raw import in_session, run_plan
from storage.types import utcnow
from storage.workspaces import ensure_workspace
from tests.harness import Database


@pytest.fixture
async def sessions(db: Database) -> AsyncIterator[SessionFactory]:
    engine = create_engine(db.url, schema=db.schema)
    await migrate(engine, schema=db.schema)
    factory = create_session_factory(engine)
    async with factory() as session, session.begin():
        await ensure_workspace(
            session=session,
            workspace_id="ws_test",
            name="t",
            business_name="T",
            timezone="UTC",
            vertical="generic",
            api_key_hash=None,
        )
    yield factory
    await engine.dispose()


async def _enqueue(sessions: SessionFactory, key: str, *, fold: bool, delay: float = 0) -> None:
    async with sessions() as session, session.begin():
        await in_session(
            session,
            lambda d: jobs.enqueue_plan(
                d,
                kind=key.split(":")[0],
                key=key,
                run_at=utcnow() + timedelta(seconds=delay),
                fold=fold,
            ),
        )


async def _lease(sessions: SessionFactory, lease_seconds: float = 30) -> Lease | None:
    async with sessions() as session, session.begin():
        leased = await jobs.lease_batch(
            conn=await session.connection(),
            kinds=("turn", "send"),
            limit=1,
            worker_id="w",
            lease_seconds=lease_seconds,
        )
    return leased[0] if leased else None


async def test_a_key_folds_into_its_unfinished_job(sessions: SessionFactory) -> None:
    await _enqueue(sessions, "turn:a", fold=True, delay=0)
    await _enqueue(sessions, "turn:a", fold=True, delay=60)
    await _enqueue(sessions, "turn:a", fold=False, delay=0)

    async with sessions() as session:
        [job] = await jobs.list_jobs(session=session, key="turn:a")
    assert job.run_at > utcnow() + timedelta(seconds=50)  # pushed back by the fold only
    assert await _lease(sessions) is None  # not due yet


async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_fenced_off(
    sessions: SessionFactory,
) -> None:
    await _enqueue(sessions, "send:x", fold=False)
    first = await _lease(sessions, lease_seconds=0.2)
    assert first is not None
    assert await _lease(sessions) is None  # held

    await asyncio.sleep(0.3)
    second = await _lease(sessions)
    assert second is not None
    assert second.id == first.id
    assert second.attempts == 2
    assert second.token != first.token

    async with sessions() as session, session.begin():
        stale = await jobs.finish(conn=await session.connection(), lease=first)
        current = await jobs.finish(conn=await session.connection(), lease=second)
    assert (stale, current) == (False, True)
    async with sessions() as session:
        [job] = await jobs.list_jobs(session=session, key="send:x")
    assert job.status == JobStatus.DONE


async def test_a_finished_key_can_be_queued_again(sessions: SessionFactory) -> None:
    await _enqueue(sessions, "turn:b", fold=True)
    job = await _lease(sessions)
    assert job is not None
    async with sessions() as session, session.begin():
        await jobs.finish(conn=await session.connection(), lease=job)
    await _enqueue(sessions, "turn:b", fold=True)
    async with sessions() as session:
        statuses = [j.status for j in await jobs.list_jobs(session=session, key="turn:b")]
    assert statuses == [JobStatus.DONE, JobStatus.QUEUED]


async def test_concurrent_workers_never_take_the_same_job(sessions: SessionFactory) -> None:
    for i in range(20):
        await _enqueue(sessions, f"send:{i}", fold=False)

    leased = await asyncio.gather(*(_lease(sessions) for _ in range(30)))

    ids = [job.id for job in leased if job is not None]
    assert len(ids) == 20
    assert len(set(ids)) == 20


async def test_inbound_is_stored_once_and_statuses_only_move_forward(
    sessions: SessionFactory,
) -> None:
    row = InboundRow(
        workspace_id="ws_test",
        provider="twilio",
        provider_message_id="SM1",
        from_number="+13105551234",
        to_number="+15550001111",
        body="hi",
        media_urls=(),
        turn_delay_seconds=0,
        max_attempts=6,
    )
    async with sessions() as session, session.begin():
        conn = await session.connection()
        first = await run_plan(conn, store_inbound(dialect_of(conn), [row]))
    async with sessions() as session, session.begin():
        conn = await session.connection()
        again = await run_plan(conn, store_inbound(dialect_of(conn), [row, row]))
    assert [s.duplicate for s in first] == [False]
    assert [s.duplicate for s in again] == [True, True]
    assert {s.message_id for s in again} == {first[0].message_id}
    conversation_id = first[0].conversation_id
    async with sessions() as session:
        thread = await messages.thread(session=session, conversation_id=conversation_id)
    assert [m.provider_message_id for m in thread] == ["SM1"]

    async with sessions() as session, session.begin():
        outbound = await in_session(
            session,
            lambda d: messages.add_outbound_plan(
                d,
                workspace_id="ws_test",
                conversation_id=conversation_id,
                author="agent",
                body="hello",
                from_number="+15550001111",
                to_number="+13105551234",
                provider="twilio",
                segments=1,
                encoding="GSM-7",
                cost_cents=0.83,
            ),
        )
        moves = [
            await in_session(
                session, partial(messages.advance_status_plan, message_id=outbound.id, status=s)
            )
            for s in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.SENT)
        ]
    assert moves == [True, True, False]
    async with sessions() as session:
        stored = await messages.get_message(session=session, message_id=outbound.id)
    assert stored is not None
    assert stored.status == MessageStatus.DELIVERED
    assert stored.delivered_at is not None
