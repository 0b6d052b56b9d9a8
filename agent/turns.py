"""One turn of a conversation: answer every inbound text no turn has answered yet.

The fast path (STOP/START/HELP, a bare "Y" to a pending confirmation) needs no model. Anything
else goes to the brain, or, with none configured, to a person with a polite holding reply.
The outcome is committed in one transaction that first checks nothing newer arrived: a text that
lands while the model is thinking supersedes the turn, which then runs again with it included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.brain import Thought, Turn
from agent.composer import ComposedSms
from agent.context import TurnContext
from agent.deps import Deps
from agent.fastpath import Classification, Keyword, classify_batch
from agent.outbox import compose_reply, queue_text
from agent.prompting import contact_zone, reply_text, system_prompt
from storage import appointments, contacts, conversations, events, jobs, messages
from storage.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    Conversation,
    ConversationMode,
    Job,
    JobStatus,
    Message,
    MessageAuthor,
    MessageDirection,
    Workspace,
)
from storage.types import utcnow
from storage.workspaces import get_workspace

log = logging.getLogger("smsagent.turns")

# Model failures are retried this many times before the customer gets the hand-off reply.
LLM_ATTEMPTS = 3


class Action(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    SILENT = "silent"
    HANDOFF = "handoff"
    LLM = "llm"


@dataclass(frozen=True)
class Snapshot:
    workspace: Workspace
    conversation: Conversation
    contact: Contact
    appointment: Appointment | None
    batch: list[Message]
    history: list[Message]


def pending_confirmation(appointment: Appointment | None, now: datetime) -> bool:
    return (
        appointment is not None
        and appointment.status == AppointmentStatus.SCHEDULED
        and (appointment.starts_at is None or appointment.starts_at > now)
    )


def decide(
    snapshot: Snapshot, classification: Classification, *, llm: bool, now: datetime
) -> Action:
    contact = snapshot.contact
    keyword = classification.keyword
    if contact.blocked:
        return Action.SILENT
    if keyword == Keyword.OPT_OUT:
        # A repeated STOP gets no second confirmation.
        return Action.SILENT if contact.opted_out else Action.OPT_OUT
    if contact.opted_out:
        return Action.OPT_IN if keyword == Keyword.OPT_IN else Action.SILENT
    if keyword == Keyword.OPT_IN:
        return Action.OPT_IN
    if keyword == Keyword.HELP:
        return Action.HELP
    if keyword == Keyword.CONFIRM and pending_confirmation(snapshot.appointment, now):
        return Action.CONFIRM
    if snapshot.conversation.mode == ConversationMode.HUMAN:
        return Action.SILENT
    return Action.LLM if llm else Action.HANDOFF


class TurnHandler:
    """Runs `turn` jobs."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def run(self, job: Job, lease: str) -> None:
        deps = self._deps
        snapshot = await self._load(str(job.payload["conversation_id"]))
        if snapshot is None or not snapshot.batch:
            async with deps.sessions() as session, session.begin():
                await jobs.finish(session=session, job_id=jobs.job_id(job), lease_token=lease)
            return
        now = utcnow()
        classification = classify_batch([m.body for m in snapshot.batch])
        action = decide(snapshot, classification, llm=deps.brain is not None, now=now)
        thought: Thought | None = None
        composed: ComposedSms | None = None
        run_id: str | None = None
        error: str | None = None
        if action == Action.LLM:
            run_id = await self._start_run(
                snapshot, model=deps.brain.model_name if deps.brain else None
            )
            try:
                thought = await self._think(snapshot, run_id, now)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if job.attempts < min(LLM_ATTEMPTS, job.max_attempts):
                    await self._close_run(run_id, outcome="error", error=error)
                    raise
                log.exception("turn.llm_failed conversation_id=%s", snapshot.conversation.id)
            composed = compose_reply(deps.settings, thought.reply) if thought else None
            if composed is None:
                action = Action.HANDOFF
        await self._commit(
            job, lease, snapshot, action, classification, thought, run_id, error, composed
        )

    async def exhausted(self, job: Job, lease: str, error: str) -> None:
        """Out of attempts: a person takes over, and the customer hears so."""
        snapshot = await self._load(str(job.payload["conversation_id"]))
        if snapshot is None or not snapshot.batch:
            async with self._deps.sessions() as session, session.begin():
                await jobs.finish(
                    session=session,
                    job_id=jobs.job_id(job),
                    lease_token=lease,
                    status=JobStatus.FAILED,
                )
            return
        classification = classify_batch([m.body for m in snapshot.batch])
        await self._commit(
            job, lease, snapshot, Action.HANDOFF, classification, None, None, error, None
        )

    async def _load(self, conversation_id: str) -> Snapshot | None:
        deps = self._deps
        async with deps.sessions() as session:
            conversation = await conversations.get_conversation(
                session=session, conversation_id=conversation_id
            )
            if conversation is None:
                return None
            workspace = await get_workspace(session=session, workspace_id=conversation.workspace_id)
            contact = await contacts.get_contact(
                session=session, contact_id=conversation.contact_id
            )
            if workspace is None or contact is None:
                return None
            appointment = None
            if conversation.appointment_id:
                appointment = await appointments.get_appointment(
                    session=session, appointment_id=conversation.appointment_id
                )
            batch = await messages.unhandled_inbound(
                session=session, conversation_id=conversation_id
            )
            history = await messages.thread(
                session=session,
                conversation_id=conversation_id,
                limit=deps.settings.llm_history_messages,
            )
        return Snapshot(workspace, conversation, contact, appointment, batch, history)

    async def _think(self, snapshot: Snapshot, run_id: str, now: datetime) -> Thought:
        assert self._deps.brain is not None
        context = TurnContext(
            workspace_id=snapshot.workspace.id,
            conversation_id=snapshot.conversation.id,
            contact_id=snapshot.contact.id,
            appointment_id=snapshot.appointment.id if snapshot.appointment else None,
            run_id=run_id,
            timezone=contact_zone(snapshot.contact, snapshot.workspace),
            system_prompt=system_prompt(
                workspace=snapshot.workspace,
                contact=snapshot.contact,
                appointment=snapshot.appointment,
                context=snapshot.conversation.context,
                now=now,
            ),
            sessions=self._deps.sessions,
        )
        history = [
            Turn("customer" if m.direction == MessageDirection.INBOUND else "business", m.body)
            for m in snapshot.history
        ]
        return await self._deps.brain.think(context, history)

    async def _start_run(self, snapshot: Snapshot, *, model: str | None) -> str:
        async with self._deps.sessions() as session, session.begin():
            run = await events.start_run(
                session=session,
                workspace_id=snapshot.workspace.id,
                conversation_id=snapshot.conversation.id,
                model=model,
                inbound_message_ids=[m.id for m in snapshot.batch],
            )
        return run.id

    async def _close_run(self, run_id: str, *, outcome: str, error: str | None = None) -> None:
        async with self._deps.sessions() as session, session.begin():
            await events.finish_run(session=session, run_id=run_id, outcome=outcome, error=error)

    async def _commit(
        self,
        job: Job,
        lease: str,
        snapshot: Snapshot,
        action: Action,
        classification: Classification,
        thought: Thought | None,
        run_id: str | None,
        error: str | None,
        composed: ComposedSms | None,
    ) -> None:
        deps = self._deps
        conversation = snapshot.conversation
        batch_ids = [m.id for m in snapshot.batch]
        async with deps.sessions() as session, session.begin():
            if (
                await jobs.lock_leased_job(
                    session=session, job_id=jobs.job_id(job), lease_token=lease
                )
                is None
            ):
                log.warning("turn.lease_lost conversation_id=%s job_id=%s", conversation.id, job.id)
                if run_id:
                    await events.finish_run(session=session, run_id=run_id, outcome="lease_lost")
                return
            waiting = await messages.unhandled_inbound(
                session=session, conversation_id=conversation.id
            )
            if {m.id for m in waiting} - set(batch_ids):
                if run_id:
                    await events.finish_run(session=session, run_id=run_id, outcome="superseded")
                await jobs.requeue(session=session, job_id=jobs.job_id(job), lease_token=lease)
                log.info("turn.superseded conversation_id=%s", conversation.id)
                return
            if run_id is None:
                run = await events.start_run(
                    session=session,
                    workspace_id=snapshot.workspace.id,
                    conversation_id=conversation.id,
                    model=None,
                    inbound_message_ids=batch_ids,
                )
                run_id = run.id
            text = await self._apply(session, snapshot, action, classification, thought, run_id)
            if text:
                await queue_text(
                    deps,
                    session=session,
                    workspace_id=conversation.workspace_id,
                    conversation_id=conversation.id,
                    sender=conversation.sender_number,
                    to=snapshot.contact.phone,
                    provider=conversation.provider,
                    text=text,
                    author=MessageAuthor.AGENT if action == Action.LLM else MessageAuthor.SYSTEM,
                    agent_run_id=run_id,
                    composed=composed if action == Action.LLM else None,
                )
            await messages.mark_handled(session=session, message_ids=batch_ids, agent_run_id=run_id)
            await events.finish_run(
                session=session,
                run_id=run_id,
                outcome=action.value if thought is None else _llm_outcome(action, thought),
                prompt_tokens=thought.prompt_tokens if thought else 0,
                completion_tokens=thought.completion_tokens if thought else 0,
                latency_ms=thought.latency_ms if thought else 0,
                tool_calls=thought.tool_calls if thought else (),
                error=error,
            )
            await jobs.finish(session=session, job_id=jobs.job_id(job), lease_token=lease)
        log.info(
            "turn.done conversation_id=%s run_id=%s action=%s inbound=%d replied=%s",
            conversation.id,
            run_id,
            action.value,
            len(batch_ids),
            bool(text),
        )
        if text:
            deps.nudge()

    async def _apply(
        self,
        session: AsyncSession,
        snapshot: Snapshot,
        action: Action,
        classification: Classification,
        thought: Thought | None,
        run_id: str,
    ) -> str | None:
        """Change what the action changes; return the reply to send, if any."""
        conversation, contact = snapshot.conversation, snapshot.contact
        workspace, appointment = snapshot.workspace, snapshot.appointment

        async def event(type: str, **data: object) -> None:
            await events.add_event(
                session=session,
                workspace_id=workspace.id,
                conversation_id=conversation.id,
                agent_run_id=run_id,
                type=type,
                data=dict(data),
            )

        if action == Action.OPT_OUT:
            source = "natural_language" if classification.natural_language else "keyword"
            await contacts.set_opt_out(
                session=session, contact_id=contact.id, opted_out=True, source=source
            )
            await event("contact.opted_out", source=source, matched=classification.matched)
            return reply_text("opt_out", workspace=workspace)
        if action == Action.OPT_IN:
            await contacts.set_opt_out(
                session=session, contact_id=contact.id, opted_out=False, source="keyword"
            )
            await event("contact.opted_in", matched=classification.matched)
            return reply_text("opt_in", workspace=workspace)
        if action == Action.HELP:
            return reply_text("help", workspace=workspace)
        if action == Action.CONFIRM:
            assert appointment is not None
            await appointments.set_appointment_status(
                session=session, appointment_id=appointment.id, status=AppointmentStatus.CONFIRMED
            )
            await event("appointment.confirmed", appointment_id=appointment.id, source="fast_path")
            return reply_text(
                "confirmed", workspace=workspace, contact=contact, appointment=appointment
            )
        if action == Action.HANDOFF:
            reason = (
                "no model configured" if self._deps.brain is None else "the agent could not answer"
            )
            await conversations.hand_to_person(
                session=session, conversation_id=conversation.id, reason=reason
            )
            await event("conversation.handoff", reason=reason)
            return reply_text("handoff", workspace=workspace)
        if action == Action.LLM and thought is not None:
            return thought.reply
        return None


def _llm_outcome(action: Action, thought: Thought) -> str:
    if action == Action.HANDOFF:
        return "step_limit" if thought.hit_step_limit else "no_reply"
    return "replied"
