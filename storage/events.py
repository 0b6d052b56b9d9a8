"""The conversation's event stream and its agent runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AgentRun, Event
from storage.raw import Dialect, Plan
from storage.types import new_id, utcnow


def event_plan(
    dialect: Dialect,
    *,
    workspace_id: str,
    conversation_id: str,
    type: str,
    data: dict[str, Any] | None = None,
    revenue: float | None = None,
    agent_run_id: str | None = None,
) -> Plan[str]:
    """Append to the conversation's stream, by one INSERT; the event's id."""
    event_id = new_id("evt")
    yield (
        "INSERT INTO events (id, workspace_id, conversation_id, agent_run_id, type, data, "
        "revenue, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            workspace_id,
            conversation_id,
            agent_run_id,
            type,
            dialect.json(data or {}),
            revenue,
            dialect.ts(utcnow()),
        ),
    )
    return event_id


async def list_events(*, session: AsyncSession, conversation_id: str) -> list[Event]:
    result = await session.exec(
        select(Event)
        .where(Event.conversation_id == conversation_id)
        .order_by(col(Event.created_at), col(Event.id))
    )
    return list(result)


def record_run(
    dialect: Dialect,
    *,
    run_id: str,
    workspace_id: str,
    conversation_id: str,
    model: str | None,
    inbound_message_ids: Sequence[str],
    outcome: str,
    started_at: datetime,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: int = 0,
    tool_calls: Sequence[dict[str, Any]] = (),
    error: str | None = None,
    corrections: Sequence[dict[str, Any]] = (),
    exchange: Sequence[dict[str, Any]] = (),
) -> Plan[None]:
    """Record a finished agent run, with the outcome, in the transaction that commits it."""
    yield (
        "INSERT INTO agent_runs (id, workspace_id, conversation_id, model, prompt_tokens, "
        "completion_tokens, latency_ms, tool_calls, inbound_message_ids, outcome, error, "
        "started_at, finished_at, corrections, exchange) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            workspace_id,
            conversation_id,
            model,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            dialect.json(list(tool_calls)),
            dialect.json(list(inbound_message_ids)),
            outcome,
            error[:2000] if error else None,
            dialect.ts(started_at),
            dialect.ts(utcnow()),
            dialect.json(list(corrections)),
            dialect.json(list(exchange)) if exchange else None,
        ),
    )


async def list_runs(*, session: AsyncSession, conversation_id: str) -> list[AgentRun]:
    result = await session.exec(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation_id)
        .order_by(col(AgentRun.started_at), col(AgentRun.id))
    )
    return list(result)
