"""The conversation's event stream and its agent runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AgentRun, Event
from storage.types import new_id, utcnow


async def add_event(
    *,
    session: AsyncSession,
    workspace_id: str,
    conversation_id: str,
    type: str,
    data: dict[str, Any] | None = None,
    revenue: float | None = None,
    agent_run_id: str | None = None,
) -> Event:
    event = Event(
        id=new_id("evt"),
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        type=type,
        data=data or {},
        revenue=revenue,
        agent_run_id=agent_run_id,
    )
    session.add(event)
    await session.flush()
    return event


async def list_events(*, session: AsyncSession, conversation_id: str) -> list[Event]:
    result = await session.exec(
        select(Event)
        .where(Event.conversation_id == conversation_id)
        .order_by(col(Event.created_at), col(Event.id))
    )
    return list(result)


async def start_run(
    *,
    session: AsyncSession,
    workspace_id: str,
    conversation_id: str,
    model: str | None,
    inbound_message_ids: Sequence[str],
) -> AgentRun:
    run = AgentRun(
        id=new_id("run"),
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        model=model,
        inbound_message_ids=list(inbound_message_ids),
    )
    session.add(run)
    await session.flush()
    return run


async def finish_run(
    *,
    session: AsyncSession,
    run_id: str,
    outcome: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: int = 0,
    tool_calls: Sequence[dict[str, Any]] = (),
    error: str | None = None,
) -> None:
    run = await session.get(AgentRun, run_id)
    if run is None:
        raise LookupError(run_id)
    run.outcome = outcome
    run.prompt_tokens = prompt_tokens
    run.completion_tokens = completion_tokens
    run.latency_ms = latency_ms
    run.tool_calls = list(tool_calls)
    run.error = error[:2000] if error else None
    run.finished_at = utcnow()
    await session.flush()


async def list_runs(*, session: AsyncSession, conversation_id: str) -> list[AgentRun]:
    result = await session.exec(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation_id)
        .order_by(col(AgentRun.started_at), col(AgentRun.id))
    )
    return list(result)
