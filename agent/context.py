"""Per-run context handed to the agent's tools through the runtime, never through arguments.

The model cannot name another contact, number or appointment: every tool acts on the ids here.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.engine import SessionFactory


@dataclass(frozen=True)
class TurnContext:
    workspace_id: str
    conversation_id: str
    contact_id: str
    appointment_id: str | None
    run_id: str
    timezone: str  # the zone times are read and said in: the contact's, else the workspace's
    system_prompt: str
    # Tools run concurrently when the model calls several at once: each opens its own session.
    sessions: SessionFactory
    # What was already true before this turn (`agent.claims.Claim` values): a reply may say it.
    standing: tuple[str, ...] = ()
    # The facts the prompt carries (hours, appointments, context): times a reply may name.
    facts: str = ""
    # The running summary of the thread's older lines, and the last message it covers.
    summary: str | None = None
    summary_through: str | None = None
