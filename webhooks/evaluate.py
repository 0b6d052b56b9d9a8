"""`smsagent eval`: each trial runs the real service against one scenario.

A trial builds the app from its factory on a fresh SQLite file, serves it on loopback, seeds the
scenario's business, people and appointments, starts the conversation through the kickoff API
when the scenario has one, and then texts as the customer through the console provider's
webhook, one text at a time, waiting for the service to settle after each. The model is any
OpenAI-compatible endpoint, or the scenario's own reference answers (`--scripted`) served on
loopback. What the trial saw is judged by `agent.evals.judge`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import openai
from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from agent.booking import Hours, format_when
from agent.deps import Deps
from agent.evals.customer import SimulatedCustomer
from agent.evals.judge import Booking, Exchange, Observed, Run, Sent, judge, standing
from agent.evals.report import TrialResult
from agent.evals.scenario import Clock, PersonSpec, Scenario, ScenarioError, StepSpec
from agent.evals.scripted import JSONDict, Reply, ScriptedLLM, Step, ToolCall, ToolCalls, error
from agent.phones import normalize_phone
from agent.settings import Settings
from storage import appointments, contacts
from storage.models import (
    AgentRun,
    Appointment,
    Contact,
    Conversation,
    ConversationMode,
    Event,
    Job,
    Message,
    MessageDirection,
)
from storage.types import utcnow
from webhooks.app import create_app
from webhooks.keys import DEPS

log = logging.getLogger("smsagent.eval")

OUR_NUMBER = "+15550001111"


@dataclass(frozen=True)
class Model:
    """The agent's model: an endpoint, or the scenarios' scripts (`base_url` None)."""

    base_url: str | None
    name: str
    api_key: str | None = None
    timeout: float = 60.0

    @property
    def scripted(self) -> bool:
        return self.base_url is None


@dataclass(frozen=True)
class CustomerModel:
    base_url: str
    name: str
    api_key: str | None = None


class TrialFailed(Exception):
    """The trial could not go on (the service refused the kickoff, a text went unanswered)."""

    def __init__(self, message: str, *, unsafe: bool = False) -> None:
        super().__init__(message)
        # A customer left waiting is unsafe; a scenario the service refuses is only a failure.
        self.unsafe = unsafe


class ScenarioScript:
    """The scripted model's answers for one trial, looked up from the request itself: the last
    customer text says which of the scenario's texts is being answered, and the model messages
    after it how many steps of that text's script were already taken."""

    def __init__(self, texts: list[tuple[str, list[StepSpec]]], clock: Clock, ids: dict[str, str]):
        self._texts = texts
        self._clock = clock
        self._ids = ids
        self.misses: list[str] = []

    def __call__(self, request: JSONDict) -> Step:
        messages = request.get("messages", [])
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            return self._miss("a request without a customer text")
        said = _content(messages[users[-1]]).strip()
        occurrence = sum(1 for i in users if _content(messages[i]).strip() == said)
        matching = [n for n, (text, _) in enumerate(self._texts) if text.strip() == said]
        if not matching:
            return self._miss(f"no scripted text {said[:40]!r}")
        number = matching[min(occurrence, len(matching)) - 1]
        step = sum(1 for m in messages[users[-1] + 1 :] if m.get("role") == "assistant")
        steps = self._texts[number][1]
        if step >= len(steps):
            return self._miss(f"text {number + 1} has no model step {step + 1}")
        return self._step(steps[step])

    def _step(self, spec: StepSpec) -> Step:
        if spec.reply is not None:
            return Reply(str(self._clock.expand(spec.reply, self._ids)))
        calls = tuple(
            ToolCall(call.name, self._clock.expand(call.args, self._ids))
            for call in spec.tool_calls()
        )
        return ToolCalls(calls)

    def _miss(self, what: str) -> Step:
        self.misses.append(f"scripted model: {what}")
        return error(500, f"the scenario's script has {what}")


def _content(message: JSONDict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def trial_settings(scenario: Scenario, model: Model, clock: Clock, folder: Path) -> Settings:
    space = scenario.workspace
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{folder / 'eval.db'}",
        "api_key": secrets.token_urlsafe(24),
        "business_name": space.business_name,
        "vertical": space.vertical,
        "timezone": space.timezone,
        "closed_days": [clock.day(d).isoformat() for d in space.closed_days],
        "scheduling": space.scheduling,
        "appointment_types": space.appointment_types,
        "sms_provider": "console",
        "from_number": OUR_NUMBER,
        "llm_base_url": model.base_url,
        "llm_model": model.name,
        "llm_api_key": model.api_key,
        "llm_timeout_seconds": model.timeout,
        "llm_max_retries": 1,
        "turn_quiet_seconds": 0.0,
        "worker_poll_seconds": 0.05,
        "log_level": "WARNING",
        # A trial plays a day's conversation at once, whatever the hour it runs at.
        "send_window": "00:00-24:00",
    }
    if space.hours is not None:
        values["business_hours"] = space.hours
    return Settings(_env_file=None, **values)


async def run_trial(
    scenario: Scenario,
    model: Model,
    trial: int,
    *,
    customer: CustomerModel | None = None,
    reply_timeout: float = 120.0,
) -> TrialResult:
    """One trial of `scenario`, judged. Never raises for what the agent did."""
    started = time.monotonic()
    clock = Clock.now_in(scenario.workspace.timezone, utcnow())
    with tempfile.TemporaryDirectory(prefix="smsagent-eval-") as folder:
        llm = ScriptedLLM() if model.scripted else None
        try:
            if llm is not None:
                await llm.start()
                model = Model(llm.base_url, model.name, None, model.timeout)
            settings = trial_settings(scenario, model, clock, Path(folder))
            seen = await _drive(scenario, settings, clock, llm, customer, reply_timeout)
        except (TrialFailed, ScenarioError) as exc:
            problem = [str(exc)]
            unsafe = isinstance(exc, TrialFailed) and exc.unsafe
            return TrialResult.of(
                scenario.id,
                trial,
                None,
                [] if unsafe else problem,
                problem if unsafe else [],
                time.monotonic() - started,
            )
        except Exception as exc:
            # The service (or the scenario's setup) broke: a failed trial, not a failed run.
            log.exception("eval.trial_crashed scenario=%s trial=%d", scenario.id, trial)
            return TrialResult.of(
                scenario.id,
                trial,
                None,
                [f"the trial crashed: {type(exc).__name__}: {exc}"[:500]],
                [],
                time.monotonic() - started,
            )
        finally:
            if llm is not None:
                await llm.stop()
    verdict = judge(scenario, clock, seen)
    return TrialResult.of(
        scenario.id, trial, seen, verdict.failures, verdict.unsafe, time.monotonic() - started
    )


async def _drive(
    scenario: Scenario,
    settings: Settings,
    clock: Clock,
    llm: ScriptedLLM | None,
    customer: CustomerModel | None,
    reply_timeout: float,
) -> Observed:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        deps = app[DEPS]
        contact_id, ids = await _seed(deps, scenario, clock)
        script: ScenarioScript | None = None
        if llm is not None:
            texts = [(str(clock.expand(t.say, ids)), t.model) for t in scenario.customer.texts]
            script = ScenarioScript(texts, clock, ids)
            llm.respond = script
        before = await _bookings(deps)
        opted_out_before = await _opted_out(deps, contact_id)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            texter = _Texter(http, base, deps, settings, scenario, reply_timeout)
            if scenario.kickoff is not None:
                await texter.kickoff(clock, ids)
            exchanges = await _converse(texter, scenario, clock, ids, customer, llm is not None)
        problems = list(script.misses) if script else []
        return await _observe(deps, contact_id, ids, before, opted_out_before, exchanges, problems)
    finally:
        await runner.cleanup()


async def _seed(deps: Deps, scenario: Scenario, clock: Clock) -> tuple[str, dict[str, str]]:
    """The scenario's people and appointments, as they are before the conversation."""
    people: dict[str | None, PersonSpec] = {None: scenario.contact}
    people.update(scenario.others)
    ids: dict[str, str] = {}
    zone = scenario.workspace.timezone
    async with deps.sessions() as session, session.begin():
        contact_ids: dict[str | None, str] = {}
        for key, person in people.items():
            contact = await contacts.upsert_contact_by_phone(
                session=session,
                workspace_id=deps.workspace_id,
                phone=normalize_phone(person.phone),
                fields={"first_name": person.first_name, "last_name": person.last_name},
            )
            contact.tags = list(person.tags)
            if person.opted_out:
                contact.opted_out, contact.opted_out_at = True, utcnow()
                contact.opt_out_source = "keyword"
            contact_ids[key] = contact.id
        for key, spec in scenario.appointments.items():
            start = clock.moment(spec.start)
            appointment = await appointments.upsert_appointment(
                session=session,
                workspace_id=deps.workspace_id,
                contact_id=contact_ids[spec.person],
                external_id=key,
                fields={
                    "starts_at": start,
                    "ends_at": start + timedelta(minutes=spec.minutes),
                    "timezone": zone,
                    "type": spec.type,
                    "description": spec.description,
                    "status": spec.status,
                },
            )
            ids[key] = appointment.id
    return contact_ids[None], ids


class _Texter:
    """The customer's phone and the business's kickoff, over HTTP to the running service."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        deps: Deps,
        settings: Settings,
        scenario: Scenario,
        reply_timeout: float,
    ) -> None:
        self.http, self.base, self.deps, self.settings = http, base, deps, settings
        self.scenario = scenario
        self.reply_timeout = reply_timeout
        self.phone = normalize_phone(scenario.contact.phone)
        self.zone = settings.timezone
        self.hours = Hours.parse(settings.business_hours, settings.closed_days).describe()
        self.thread: list[tuple[str, str]] = []
        # What the office told the agent beyond the texts (the kickoff's context).
        self.told: list[str] = []
        self._sent = 0

    async def kickoff(self, clock: Clock, ids: dict[str, str]) -> None:
        kickoff = self.scenario.kickoff
        assert kickoff is not None
        body: dict[str, Any] = {
            "to": self.phone,
            "message": clock.expand(kickoff.message, ids),
            "contact": {
                "first_name": self.scenario.contact.first_name,
                "last_name": self.scenario.contact.last_name,
            },
        }
        if kickoff.context:
            body["context"] = clock.expand(kickoff.context, ids)
            self.told.append(str(body["context"]))
        if kickoff.appointment is not None:
            spec = self.scenario.appointments[kickoff.appointment]
            start = clock.moment(spec.start)
            body["appointment"] = {
                "external_id": kickoff.appointment,
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=spec.minutes)).isoformat(),
                "type": spec.type,
                "description": spec.description,
            }
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        async with self.http.post(
            f"{self.base}/v1/conversations",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            answer = await response.json(content_type=None)
            if response.status != 201:
                raise TrialFailed(f"the kickoff was refused ({response.status}): {answer}")
        await self._settle("the kickoff text")
        self.thread.append(("business", str(body["message"])))

    async def text(self, body: str) -> Exchange:
        """Send one text as the customer; what came back once the service settled."""
        contact = await self._contact()
        live = await self._live_mode(contact.id)
        theirs = [b for b in (await _bookings(self.deps)).values() if b.contact_id == contact.id]
        exchange = Exchange(
            text=body,
            may_be_silent=contact.opted_out or contact.blocked or live == ConversationMode.HUMAN,
            standing=standing(theirs, with_person=live == ConversationMode.HUMAN),
            known="\n".join(
                [
                    self.hours,
                    *self.told,
                    *(format_when(b.starts_at, self.zone) for b in theirs if b.starts_at),
                    *(text for who, text in self.thread if who == "business"),
                ]
            ),
        )
        self._sent += 1
        sent_at = utcnow()
        payload = {"from": self.phone, "to": OUR_NUMBER, "body": body, "id": f"EVAL{self._sent}"}
        async with self.http.post(f"{self.base}/webhooks/console/sms", json=payload) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise TrialFailed(f"the text was refused ({response.status}): {answer}")
        await self._settle(f"the reply to text {self._sent}")
        # The prompt tells the agent the time the turn started: it may say it.
        minute = sent_at.replace(second=0, microsecond=0)
        while minute <= utcnow():
            exchange.known += "\n" + format_when(minute, self.zone)
            minute += timedelta(minutes=1)
        exchange.replies = await self._replies(answer["conversation_id"], answer["message_id"])
        self.thread.append(("customer", body))
        self.thread += [("business", sent.body) for sent in exchange.replies]
        return exchange

    async def _settle(self, what: str) -> None:
        """Wait until no job is queued or running: the turn ran and its reply was sent."""
        deadline = time.monotonic() + self.reply_timeout
        while time.monotonic() < deadline:
            async with self.deps.sessions() as session:
                active = await session.exec(
                    select(func.count())
                    .select_from(Job)
                    .where(col(Job.status).in_(("queued", "running")))
                )
                if active.one() == 0:
                    return
            await asyncio.sleep(0.05)
        raise TrialFailed(f"{what} did not come within {self.reply_timeout:g}s", unsafe=True)

    async def _replies(self, conversation_id: str, inbound_id: str) -> list[Sent]:
        async with self.deps.sessions() as session:
            rows = await session.exec(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(col(Message.created_at), col(Message.id))
            )
            thread = list(rows.all())
        position = next((i for i, m in enumerate(thread) if m.id == inbound_id), len(thread))
        return [
            Sent(m.body, m.author, m.segments, m.encoding, m.agent_run_id)
            for m in thread[position + 1 :]
            if m.direction == MessageDirection.OUTBOUND
        ]

    async def _contact(self) -> Contact:
        async with self.deps.sessions() as session:
            found = await session.exec(select(Contact).where(Contact.phone == self.phone))
            return found.one()

    async def _live_mode(self, contact_id: str) -> str | None:
        async with self.deps.sessions() as session:
            found = await session.exec(
                select(Conversation.mode)
                .where(Conversation.contact_id == contact_id, Conversation.status != "closed")
                .order_by(col(Conversation.created_at).desc())
            )
            return found.first()


async def _converse(
    texter: _Texter,
    scenario: Scenario,
    clock: Clock,
    ids: dict[str, str],
    customer: CustomerModel | None,
    scripted: bool,
) -> list[Exchange]:
    spec = scenario.customer
    if customer is not None and spec.persona and spec.goal and not scripted:
        return await _simulated(texter, scenario, clock, ids, customer)
    if not spec.texts:
        raise TrialFailed("this scenario's customer is played by a model: give --customer-url")
    return [await texter.text(str(clock.expand(t.say, ids))) for t in spec.texts]


async def _simulated(
    texter: _Texter,
    scenario: Scenario,
    clock: Clock,
    ids: dict[str, str],
    customer: CustomerModel,
) -> list[Exchange]:
    spec = scenario.customer
    assert spec.persona is not None
    assert spec.goal is not None
    client = openai.AsyncOpenAI(
        base_url=customer.base_url, api_key=customer.api_key or "not-needed", timeout=60
    )
    try:
        person = SimulatedCustomer.of(
            client,
            customer.name,
            business=scenario.workspace.business_name,
            persona=str(clock.expand(spec.persona, ids)),
            goal=str(clock.expand(spec.goal, ids)),
            today=clock.moment("today").strftime("%A, %B %d, %Y"),
        )
        exchanges: list[Exchange] = []
        for _ in range(spec.max_texts):
            text = await person.next_text(texter.thread)
            if text is None:
                break
            exchanges.append(await texter.text(text))
        return exchanges
    finally:
        await client.close()


async def _bookings(deps: Deps) -> dict[str, Booking]:
    async with deps.sessions() as session:
        rows = await session.exec(select(Appointment))
        return {
            a.id: Booking(a.id, a.external_id, a.contact_id, a.starts_at, a.status)
            for a in rows.all()
        }


async def _opted_out(deps: Deps, contact_id: str) -> bool:
    async with deps.sessions() as session:
        contact = await session.get(Contact, contact_id)
        return bool(contact and contact.opted_out)


async def _observe(
    deps: Deps,
    contact_id: str,
    ids: dict[str, str],
    before: dict[str, Booking],
    opted_out_before: bool,
    exchanges: list[Exchange],
    problems: list[str],
) -> Observed:
    async with deps.sessions() as session:
        contact = await session.get(Contact, contact_id, populate_existing=True)
        assert contact is not None
        mine = select(Conversation).where(Conversation.contact_id == contact_id)
        threads = list((await session.exec(mine)).all())
        in_threads = col(Event.conversation_id).in_([c.id for c in threads])
        events = list((await session.exec(select(Event.type).where(in_threads))).all())
        runs = (await session.exec(select(AgentRun))).all()
    return Observed(
        contact_id=contact_id,
        ids=ids,
        before=before,
        after=await _bookings(deps),
        tags=list(contact.tags),
        opted_out_before=opted_out_before,
        opted_out=contact.opted_out,
        handed_off=any(c.mode == ConversationMode.HUMAN for c in threads),
        events=events,
        runs={
            r.id: Run(
                r.id,
                r.outcome,
                list(r.tool_calls),
                list(r.corrections),
                r.prompt_tokens,
                r.completion_tokens,
                r.latency_ms,
            )
            for r in runs
        },
        exchanges=exchanges,
        problems=problems,
        segment_budget=deps.settings.sms_max_segments,
    )


async def run_all(
    scenarios: list[Scenario],
    model: Model,
    trials: int,
    *,
    customer: CustomerModel | None = None,
    concurrency: int = 1,
    reply_timeout: float = 120.0,
    on_result: Callable[[TrialResult], Awaitable[None] | None] | None = None,
) -> list[TrialResult]:
    """Every scenario `trials` times, at most `concurrency` trials at once, in a stable order."""
    slots = asyncio.Semaphore(concurrency)
    jobs = [(s, t) for s in scenarios for t in range(1, trials + 1)]

    async def one(scenario: Scenario, trial: int) -> TrialResult:
        async with slots:
            result = await run_trial(
                scenario, model, trial, customer=customer, reply_timeout=reply_timeout
            )
        if on_result is not None:
            maybe = on_result(result)
            if maybe is not None:
                await maybe
        return result

    return list(await asyncio.gather(*(one(s, t) for s, t in jobs)))


def dump(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
