"""One turn of a conversation: answer every inbound text no turn has answered yet.

The fast path (STOP/START/HELP, a bare "Y" to a pending confirmation) needs no model. Anything
else goes to the brain, or, with none configured, to a person with a polite holding reply.
The outcome is committed in one transaction that first checks nothing newer arrived: a text that
lands while the model is thinking supersedes the turn, which then runs again with it included.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from agent import campaigns, hooks
from agent.brain import Thought, Turn
from agent.claims import Claim
from agent.composer import ComposedSms
from agent.context import TurnContext
from agent.deps import Deps
from agent.fastpath import Classification, Keyword, classify_batch
from agent.language import language_of
from agent.media import seen
from agent.outbox import SEND_JOB, Queued, compose_reply, queue_text_plan, send_key
from agent.pacing import Places, back_to_work, wait_elsewhere
from agent.prompting import contact_zone, rendered_prompt, reply_text
from agent.quiet import recipient_zone
from agent.settings import Settings
from storage import appointments, contacts, conversations, events, jobs, messages
from storage import media as kept_media
from storage.campaigns import by_keyword_plan
from storage.conversations import EarlierThread
from storage.jobs import Lease
from storage.models import (
    Appointment,
    AppointmentStatus,
    Campaign,
    Contact,
    Conversation,
    ConversationMode,
    JobStatus,
    Media,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    Workspace,
)
from storage.raw import Dialect, Plan, commit_plan
from storage.types import new_id, utcnow

log = logging.getLogger("smsagent.turns")

# Model failures are retried this many times before the customer gets the hand-off reply.
LLM_ATTEMPTS = 3


class Action(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    CAMPAIGN = "campaign"
    SILENT = "silent"
    HANDOFF = "handoff"
    EMERGENCY = "emergency"
    LLM = "llm"


@dataclass(frozen=True)
class Snapshot:
    workspace: Workspace
    conversation: Conversation
    contact: Contact
    appointment: Appointment | None
    batch: list[Message]
    history: list[Message]
    # The contact's other upcoming appointments (the thread's own is `appointment`).
    others: list[Appointment] = field(default_factory=list)
    # What came of the contact's earlier threads, most recent last.
    earlier: list[EarlierThread] = field(default_factory=list)
    # The campaign whose keyword the batch is, when it is one.
    campaign: Campaign | None = None
    # What was fetched of the media of the history's and the batch's texts.
    media: list[Media] = field(default_factory=list)


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
    # The customer asked for the campaign by its keyword: it starts even while a person has
    # the thread.
    if snapshot.campaign is not None:
        return Action.CAMPAIGN
    # A person has the thread: a "yes" may answer their question, not the reminder.
    if snapshot.conversation.mode == ConversationMode.HUMAN:
        return Action.SILENT
    if keyword == Keyword.CONFIRM and pending_confirmation(snapshot.appointment, now):
        return Action.CONFIRM
    if keyword == Keyword.EMERGENCY:
        return Action.EMERGENCY
    return Action.LLM if llm else Action.HANDOFF


class TurnHandler:
    """Runs `turn` jobs: one read snapshot, the decision (and the model, if needed), one commit.

    The model is called by at most `llm_max_concurrency` turns at a time in this process; the
    rest wait their turn here, holding nothing but memory. At most `worker_turns_starting` are
    at work rather than waiting (see `agent.pacing`).
    """

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._dialect = Dialect(deps.engine.dialect.name)
        self._llm_slots = asyncio.Semaphore(deps.settings.llm_max_concurrency)
        self._places = Places(deps.settings.worker_turns_at_work)

    async def run(self, job: Lease) -> None:
        async with self._places.turn():
            await self._run(job)

    async def _run(self, job: Lease) -> None:
        deps = self._deps
        started = utcnow()
        snapshot = await self._load(str(job.payload["conversation_id"]))
        if snapshot is None or not snapshot.batch:
            await commit_plan(deps.engine, jobs.settle_plan(self._dialect, job))
            return
        snapshot = await self._keep_media(snapshot)
        classification = classify_batch([m.body for m in snapshot.batch])
        action = decide(snapshot, classification, llm=deps.brain is not None, now=started)
        thought: Thought | None = None
        composed: ComposedSms | None = None
        run_id = new_id("run")
        error: str | None = None
        if action == Action.LLM:
            try:
                if self._llm_slots.locked():
                    wait_elsewhere()
                async with self._llm_slots:
                    await back_to_work()
                    thought = await self._think(snapshot, run_id, started)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if job.attempts < min(LLM_ATTEMPTS, job.max_attempts):
                    await self._record_failed_run(snapshot, run_id, started, error)
                    raise
                log.exception("turn.llm_failed conversation_id=%s", snapshot.conversation.id)
            composed = compose_reply(deps.settings, thought.reply) if thought else None
            if composed is None:
                action = Action.HANDOFF
        model = self._model_name if thought is not None or error is not None else None
        outcome = Outcome(action, classification, thought, run_id, started, error, composed, model)
        await self._commit(job, snapshot, outcome)

    async def exhausted(self, job: Lease, error: str) -> None:
        """Out of attempts: a person takes over, and the customer hears so."""
        snapshot = await self._load(str(job.payload["conversation_id"]))
        if snapshot is None or not snapshot.batch:
            await commit_plan(
                self._deps.engine, jobs.settle_plan(self._dialect, job, status=JobStatus.FAILED)
            )
            return
        classification = classify_batch([m.body for m in snapshot.batch])
        outcome = Outcome(
            Action.HANDOFF, classification, None, new_id("run"), utcnow(), error, None, None
        )
        await self._commit(job, snapshot, outcome)

    async def _load(self, conversation_id: str) -> Snapshot | None:
        limit = self._deps.settings.llm_history_messages
        return await commit_plan(
            self._deps.reader, _snapshot(self._dialect, conversation_id, limit)
        )

    async def _keep_media(self, snapshot: Snapshot) -> Snapshot:
        """The batch's media fetched and kept (each item once, whatever the turn decides; a
        blocked contact's is not fetched)."""
        keeper = self._deps.media
        if keeper is None or snapshot.contact.blocked:
            return snapshot
        kept = await keeper.keep(
            workspace_id=snapshot.workspace.id,
            conversation_id=snapshot.conversation.id,
            messages=snapshot.batch,
            known=snapshot.media,
        )
        return replace(snapshot, media=kept)

    async def _think(self, snapshot: Snapshot, run_id: str, now: datetime) -> Thought:
        assert self._deps.brain is not None
        prompt, facts = rendered_prompt(
            workspace=snapshot.workspace,
            contact=snapshot.contact,
            appointment=snapshot.appointment,
            others=snapshot.others,
            earlier=snapshot.earlier,
            context=snapshot.conversation.context,
            now=now,
        )
        context = TurnContext(
            workspace_id=snapshot.workspace.id,
            conversation_id=snapshot.conversation.id,
            contact_id=snapshot.contact.id,
            appointment_id=snapshot.appointment.id if snapshot.appointment else None,
            run_id=run_id,
            timezone=contact_zone(snapshot.contact, snapshot.workspace),
            system_prompt=prompt,
            facts=facts,
            summary=snapshot.conversation.summary,
            summary_through=snapshot.conversation.summary_through,
            sessions=self._deps.sessions,
            standing=_standing(snapshot),
        )
        # Photos are shown with the turn's own texts; every text with media gets a note.
        media = await seen(
            [*snapshot.history, *snapshot.batch],
            snapshot.media,
            keeper=self._deps.media,
            show={m.id for m in snapshot.batch},
            vision=self._deps.settings.llm_vision,
        )
        history = [
            Turn(
                "customer" if m.direction == MessageDirection.INBOUND else "business",
                media.text(m),
                m.id,
                media.images.get(m.id, ()),
            )
            for m in snapshot.history
            # Texts waiting for their time (a campaign's later steps), or called off, were
            # never said.
            if m.status not in _UNSAID
        ]
        return await self._deps.brain.think(context, history)

    async def _record_failed_run(
        self, snapshot: Snapshot, run_id: str, started: datetime, error: str
    ) -> None:
        await commit_plan(
            self._deps.engine,
            events.record_run(
                self._dialect,
                run_id=run_id,
                workspace_id=snapshot.workspace.id,
                conversation_id=snapshot.conversation.id,
                model=self._model_name,
                inbound_message_ids=[m.id for m in snapshot.batch],
                outcome="error",
                started_at=started,
                error=error,
            ),
        )

    @property
    def _model_name(self) -> str | None:
        return self._deps.brain.model_name if self._deps.brain else None

    async def _commit(self, job: Lease, snapshot: Snapshot, outcome: Outcome) -> None:
        """Everything the turn changes, in one transaction (one call on SQLite's thread)."""
        committed = await commit_plan(self._deps.engine, self._outcome(job, snapshot, outcome))
        conversation_id = snapshot.conversation.id
        if committed == _LEASE_LOST:
            log.warning("turn.lease_lost conversation_id=%s job_id=%s", conversation_id, job.id)
            return
        if committed == _SUPERSEDED:
            log.info("turn.superseded conversation_id=%s", conversation_id)
            return
        if committed == _TAKEN_OVER:
            log.info("turn.taken_over conversation_id=%s", conversation_id)
            return
        log.info(
            "turn.done conversation_id=%s run_id=%s action=%s inbound=%d replied=%s",
            conversation_id,
            outcome.run_id,
            outcome.action.value,
            len(snapshot.batch),
            committed is not None,
        )
        if isinstance(committed, Lease):
            self._deps.dispatch(committed)

    def _outcome(
        self, job: Lease, snapshot: Snapshot, outcome: Outcome
    ) -> Plan[Lease | str | None]:
        """The turn's writes, after checking the lease still holds and no newer text arrived
        (which supersedes the turn: it runs again with it). Answers the reply's send lease, or
        `_REPLIED` / None (replied without a send job / nothing to send), or why it stopped."""
        deps, dialect = self._deps, self._dialect
        conversation = snapshot.conversation
        batch_ids = [m.id for m in snapshot.batch]
        action, thought = outcome.action, outcome.thought

        def record_run(result: str, **extra: Any) -> Plan[None]:
            return events.record_run(
                dialect,
                run_id=outcome.run_id,
                workspace_id=snapshot.workspace.id,
                conversation_id=conversation.id,
                model=outcome.model,
                inbound_message_ids=batch_ids,
                outcome=result,
                started_at=outcome.started,
                **extra,
            )

        if dialect.postgres:
            # Lock rows in the order a text's acceptance does (contact, thread, then the turn's
            # job), so the two never wait on each other until PostgreSQL breaks a deadlock. No
            # key columns change, so foreign-key checks on these rows are never shut out.
            if action in (Action.OPT_OUT, Action.OPT_IN):
                yield (
                    "SELECT 1 FROM contacts WHERE id = ? FOR NO KEY UPDATE",
                    (snapshot.contact.id,),
                )
            yield ("SELECT 1 FROM conversations WHERE id = ? FOR NO KEY UPDATE", (conversation.id,))
        if not (yield from jobs.holds_plan(dialect, job)):
            if outcome.model is not None:
                yield from record_run("lease_lost")
            return _LEASE_LOST
        waiting = yield from messages.unhandled_ids(conversation.id)
        if waiting - set(batch_ids):
            if outcome.model is not None:
                yield from record_run("superseded")
            yield from jobs.settle_plan(dialect, job, status=JobStatus.QUEUED, uncount=True)
            return _SUPERSEDED
        if action in (Action.LLM, Action.HANDOFF) and conversation.mode == ConversationMode.AGENT:
            # A person took the thread over while the model was thinking (the agent's own
            # hand-off tool changes the mode too, so it is the person's event that tells): they
            # answer now, and the agent's reply is never sent.
            [(taken,)] = yield (
                "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND created_at >= ? "
                "AND type IN ('conversation.human_reply', 'conversation.taken_over')",
                (conversation.id, dialect.ts(outcome.started)),
            )
            if taken:
                yield from messages.mark_handled(dialect, batch_ids, outcome.run_id)
                if outcome.model is not None:
                    yield from record_run("taken_over")
                yield from jobs.settle_plan(dialect, job)
                return _TAKEN_OVER
        text = yield from self._apply(snapshot, outcome)
        sent: Lease | str | None = None
        if text:
            token = f"{job.token}/send"
            queued = yield from queue_text_plan(
                dialect,
                deps.settings,
                workspace_id=conversation.workspace_id,
                conversation_id=conversation.id,
                sender=conversation.sender_number,
                to=snapshot.contact.phone,
                provider=conversation.provider,
                text=text,
                author=MessageAuthor.AGENT if action == Action.LLM else MessageAuthor.SYSTEM,
                agent_run_id=outcome.run_id,
                composed=outcome.composed if action == Action.LLM else None,
                lease=(token, deps.settings.job_lease_seconds),
                media_urls=campaigns.first_media(snapshot.campaign)
                if action == Action.CAMPAIGN
                else (),
            )
            if action == Action.CAMPAIGN:
                # The reply is the first step; the later ones are queued after it.
                yield from _campaign_started(dialect, deps.settings, snapshot, queued.message.id)
            sent = (
                _send_lease(queued, token, deps.settings.job_max_attempts)
                if queued.job_id is not None
                else _REPLIED
            )
        yield from messages.mark_handled(dialect, batch_ids, outcome.run_id)
        if thought is not None and thought.summary is not None:
            yield from conversations.summary_plan(dialect, conversation.id, *thought.summary)
        yield from record_run(
            action.value if thought is None else _llm_outcome(action, thought),
            prompt_tokens=thought.prompt_tokens if thought else 0,
            completion_tokens=thought.completion_tokens if thought else 0,
            latency_ms=thought.latency_ms if thought else 0,
            tool_calls=thought.tool_calls if thought else (),
            corrections=thought.corrections if thought else (),
            exchange=thought.exchange if thought else (),
            error=outcome.error,
        )
        yield from jobs.settle_plan(dialect, job)
        return sent

    def _provider_answers(self, snapshot: Snapshot, outcome: Outcome) -> bool:
        """The thread's provider answers this keyword itself (Twilio Advanced Opt-Out): its
        confirmation is the one the customer gets. Words that are not the carrier's keywords
        ("please stop texting me") are still ours to confirm."""
        provider = self._deps.provider(snapshot.conversation.provider)
        return (
            provider is not None
            and provider.answers_keywords
            and not outcome.classification.natural_language
        )

    def _apply(self, snapshot: Snapshot, outcome: Outcome) -> Plan[str | None]:
        """Change what the action changes; return the reply to send, if any."""
        dialect = self._dialect
        conversation, contact = snapshot.conversation, snapshot.contact
        workspace, appointment = snapshot.workspace, snapshot.appointment
        action, classification, thought = outcome.action, outcome.classification, outcome.thought
        language = language_of(m.body for m in snapshot.batch)

        def event(type: str, **data: object) -> Plan[str]:
            return events.event_plan(
                dialect,
                workspace_id=workspace.id,
                conversation_id=conversation.id,
                agent_run_id=outcome.run_id,
                type=type,
                data=dict(data),
            )

        def handed_off(reason: str) -> Plan[None]:
            yield from conversations.hand_to_person_plan(dialect, conversation.id, reason)
            yield from event("conversation.handoff", reason=reason)
            yield from hooks.hook_plan(
                dialect,
                workspace,
                hooks.CONVERSATION_HANDOFF,
                {"conversation_id": conversation.id, "contact_id": contact.id, "reason": reason},
            )

        if action == Action.OPT_OUT:
            source = "natural_language" if classification.natural_language else "keyword"
            yield from contacts.opt_out_plan(dialect, contact.id, opted_out=True, source=source)
            yield from campaigns.opted_out_plan(dialect, contact.id)
            yield from event("contact.opted_out", source=source, matched=classification.matched)
            yield from hooks.hook_plan(
                dialect,
                workspace,
                hooks.CONTACT_OPTED_OUT,
                {
                    "contact_id": contact.id,
                    "phone": contact.phone,
                    "conversation_id": conversation.id,
                    "source": source,
                },
            )
            return (
                None
                if self._provider_answers(snapshot, outcome)
                else reply_text("opt_out", workspace=workspace)
            )
        if action == Action.OPT_IN:
            yield from contacts.opt_out_plan(dialect, contact.id, opted_out=False, source="keyword")
            yield from event("contact.opted_in", matched=classification.matched)
            return (
                None
                if self._provider_answers(snapshot, outcome)
                else reply_text("opt_in", workspace=workspace)
            )
        if action == Action.HELP:
            if self._provider_answers(snapshot, outcome):
                return None
            return reply_text("help", workspace=workspace, language=language)
        if action == Action.CAMPAIGN:
            assert snapshot.campaign is not None
            return campaigns.first_text(snapshot.campaign)
        if action == Action.CONFIRM:
            assert appointment is not None
            yield from appointments.status_plan(
                dialect, appointment.id, AppointmentStatus.CONFIRMED
            )
            yield from event(
                "appointment.confirmed", appointment_id=appointment.id, source="fast_path"
            )
            yield from hooks.hook_plan(
                dialect,
                workspace,
                hooks.APPOINTMENT_CONFIRMED,
                hooks.appointment_data(
                    appointment,
                    status=AppointmentStatus.CONFIRMED,
                    conversation_id=conversation.id,
                    source="fast_path",
                ),
            )
            return reply_text(
                "confirmed",
                workspace=workspace,
                contact=contact,
                appointment=appointment,
                language=language,
            )
        if action == Action.EMERGENCY:
            reason = f"emergency: {classification.matched}"[:300]
            yield from event("conversation.emergency", matched=classification.matched)
            yield from handed_off(reason)
            return reply_text("emergency", workspace=workspace, language=language)
        if action == Action.HANDOFF:
            reason = (
                "no model configured" if self._deps.brain is None else "the agent could not answer"
            )
            if thought is not None and _withheld(thought):
                reason = "the agent's reply claimed what had not happened"
            yield from handed_off(reason)
            return reply_text("handoff", workspace=workspace, language=language)
        if action == Action.LLM and thought is not None:
            return thought.reply
        return None


@dataclass(frozen=True)
class Outcome:
    """What a turn decided, waiting to be committed."""

    action: Action
    classification: Classification
    thought: Thought | None
    run_id: str
    started: datetime
    error: str | None
    composed: ComposedSms | None
    model: str | None  # the model asked, when one was


_UNSAID = frozenset({MessageStatus.SCHEDULED, MessageStatus.CANCELED})

# Why a turn's commit stopped short; or that it replied without a send job of its own.
_LEASE_LOST = "lease_lost"
_SUPERSEDED = "superseded"
_TAKEN_OVER = "taken_over"
_REPLIED = "replied"


def _snapshot(dialect: Dialect, conversation_id: str, limit: int) -> Plan[Snapshot | None]:
    found = yield from conversations.thread_context(conversation_id)
    if found is None:
        return None
    upcoming = yield from appointments.upcoming_plan(
        dialect, found.contact.id, after=utcnow() - timedelta(hours=1)
    )
    own = found.appointment.id if found.appointment else None
    earlier = yield from conversations.earlier_threads(found.contact.id, conversation_id)
    history = yield from messages.thread_plan(conversation_id, limit)
    batch = [m for m in history if _unanswered(m)]
    if history and _unanswered(history[0]):
        # The burst is longer than the history window: fetch all of it.
        batch = yield from messages.unhandled_inbound(conversation_id)
    campaign = None
    # Only a text of one word that could be a keyword costs a look-up.
    word = campaigns.keyword_in([m.body for m in batch])
    if word is not None:
        campaign = yield from by_keyword_plan(found.workspace.id, word)
    with_media = sorted({m.id for m in (*history, *batch) if m.media_urls})
    media = yield from kept_media.of_messages(with_media)
    return Snapshot(
        found.workspace,
        found.conversation,
        found.contact,
        found.appointment,
        batch,
        history,
        [a for a in upcoming if a.id != own],
        earlier,
        campaign,
        media,
    )


def _campaign_started(
    dialect: Dialect, settings: Settings, snapshot: Snapshot, first_id: str
) -> Plan[None]:
    assert snapshot.campaign is not None
    conversation, contact = snapshot.conversation, snapshot.contact
    yield from campaigns.start_plan(
        dialect,
        settings,
        campaign=snapshot.campaign,
        conversation_id=conversation.id,
        contact_id=contact.id,
        sender=conversation.sender_number,
        provider=conversation.provider,
        phone=contact.phone,
        zone=recipient_zone(
            phone=contact.phone,
            contact_zone=contact.timezone,
            workspace_zone=snapshot.workspace.timezone,
        ),
        first=campaigns.QueuedStep(first_id, MessageStatus.QUEUED, None),
        source="keyword",
    )


def _unanswered(message: Message) -> bool:
    return message.direction == MessageDirection.INBOUND and message.handled_at is None


def _send_lease(queued: Queued, token: str, max_attempts: int) -> Lease:
    assert queued.job_id is not None
    return Lease(
        id=queued.job_id,
        kind=SEND_JOB,
        key=send_key(queued.message.id),
        payload={"message_id": queued.message.id},
        attempts=1,
        max_attempts=max_attempts,
        last_error=None,
        token=token,
    )


def _llm_outcome(action: Action, thought: Thought) -> str:
    if action == Action.HANDOFF:
        if _withheld(thought):
            return "unbacked_claim"
        return "step_limit" if thought.hit_step_limit else "no_reply"
    return "replied"


def _withheld(thought: Thought) -> bool:
    return any(c.get("action") == "withheld" for c in thought.corrections)


def _standing(snapshot: Snapshot) -> tuple[str, ...]:
    """What a reply may say without a tool this turn, because it was already so."""
    status = snapshot.appointment.status if snapshot.appointment else None
    return (
        {
            AppointmentStatus.CONFIRMED: (Claim.CONFIRMED.value,),
            AppointmentStatus.RESCHEDULED: (Claim.MOVED.value,),
            AppointmentStatus.CANCELED: (Claim.CANCELED.value,),
        }.get(AppointmentStatus(status), ())
        if status
        else ()
    )
