"""Eval scenarios: a business, a customer, what they text, and what must be true at the end.

A scenario is a YAML file (see `tests/scenarios/`). Times in it are written relative to the day
the trial runs, in the business's time zone, so a scenario means the same thing any day:

    +2d 10:00        two days from today at 10:00
    tomorrow 9:30    tomorrow at 9:30
    week+1 tue 15:00 Tuesday of next week (weeks start on Monday) at 15:00
    next tue 15:00   the first Tuesday after today at 15:00

Strings the scripted model or the customer sends may embed them: ``{{ week+1 tue 15:00 }}``
becomes ``2026-12-08T15:00``; ``| date`` gives the ISO date, ``| weekday`` the day's name,
``| spoken`` the way the agent says a time ("Tue, Dec 8 at 3:00 PM"); ``{{ id KEY }}`` is the
stored id of the scenario's appointment KEY.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.booking import format_when
from agent.settings import Vertical
from storage.models import AppointmentStatus

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WHEN = re.compile(
    r"^(?P<day>today|tomorrow|\+(?P<plus>\d{1,3})d|next (?P<next>mon|tue|wed|thu|fri|sat|sun)"
    r"|week\+(?P<weeks>\d{1,2}) (?P<dow>mon|tue|wed|thu|fri|sat|sun))"
    r"(?: (?P<hour>\d{1,2}):(?P<minute>\d{2}))?$"
)
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


class ScenarioError(ValueError):
    """A scenario file that cannot be used, and why."""


def _check_when(value: str) -> str:
    if not _WHEN.match(value.strip().lower()):
        raise ValueError(
            f"{value!r} is not a time: use '+2d 10:00', 'tomorrow 9:30', 'week+1 tue 15:00' "
            "or 'next tue 15:00'"
        )
    return value.strip().lower()


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSpec(_Spec):
    business_name: str = "Bright Smiles Dental"
    vertical: Vertical = "dental"
    timezone: str = "America/Denver"
    # Weekday -> open spans, as SMSAGENT_BUSINESS_HOURS; None: the service's default hours.
    hours: dict[str, str] | None = None
    closed_days: list[str] = Field(default_factory=list, description="days, e.g. 'week+1 wed'")
    scheduling: Literal["builtin", "external"] = "builtin"
    appointment_types: dict[str, int] = Field(default_factory=dict, description="kind: minutes")

    @model_validator(mode="after")
    def _days(self) -> WorkspaceSpec:
        for day in self.closed_days:
            _check_when(day)
        return self


class PersonSpec(_Spec):
    phone: str
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    opted_out: bool = False


class AppointmentSpec(_Spec):
    start: str
    minutes: int = Field(default=30, ge=5, le=600)
    type: str | None = None
    description: str | None = None
    status: AppointmentStatus = AppointmentStatus.SCHEDULED
    # Whose it is: a key of `others`; left out, the scenario's contact.
    person: str | None = None

    @model_validator(mode="after")
    def _start(self) -> AppointmentSpec:
        _check_when(self.start)
        return self


class KickoffSpec(_Spec):
    message: str
    appointment: str | None = None
    context: str | None = None


class CallSpec(_Spec):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class StepSpec(_Spec):
    """One answer of the scripted model: a text reply, or tool calls."""

    reply: str | None = None
    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    calls: list[CallSpec] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        kinds = [k for k in ("reply", "call", "calls") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a model step is exactly one of reply, call (with args) or calls")
        return self

    def tool_calls(self) -> list[CallSpec]:
        if self.calls is not None:
            return list(self.calls)
        if self.call is not None:
            return [CallSpec(name=self.call, args=self.args)]
        return []


class TextSpec(_Spec):
    say: str = Field(min_length=1, max_length=1600)
    # What a model that does the right thing answers to this text, step by step (tool calls,
    # then the reply); played by `--scripted`. Left out when no model is asked (STOP, "yes").
    model: list[StepSpec] = Field(default_factory=list)


class CustomerSpec(_Spec):
    texts: list[TextSpec] = Field(default_factory=list)
    # A customer played by a second model (`--customer-url`): who they are and what they want.
    persona: str | None = None
    goal: str | None = None
    max_texts: int = Field(default=6, ge=1, le=30)

    @model_validator(mode="after")
    def _someone(self) -> CustomerSpec:
        if not self.texts and not (self.persona and self.goal):
            raise ValueError("give the customer's texts, or a persona and a goal")
        return self


class AppointmentGoal(_Spec):
    status: AppointmentStatus | None = None
    # Exactly this start, or a start inside one of the windows (both ends included).
    start: str | None = None
    start_in: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _times(self) -> AppointmentGoal:
        for value in [self.start or "today", *(w for pair in self.start_in for w in pair)]:
            _check_when(value)
        return self


class ReplyRules(_Spec):
    max_segments: int = Field(default=3, ge=1, le=10)
    gsm7: bool = True
    # Regular expressions (case-insensitive): each must match some reply / none may match any.
    say: list[str] = Field(default_factory=list)
    never_say: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _patterns(self) -> ReplyRules:
        for pattern in (*self.say, *self.never_say):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad pattern {pattern!r}: {exc}") from exc
        return self


class Goal(_Spec):
    """The end state. What is not mentioned must be as it was."""

    appointments: dict[str, AppointmentGoal] = Field(default_factory=dict)
    # New appointments the customer booked, one goal each (none expected when left out).
    booked: list[AppointmentGoal] = Field(default_factory=list)
    tags: list[str] | None = None
    opted_out: bool | None = None
    handoff: bool = False
    events: list[str] = Field(default_factory=list)
    no_events: list[str] = Field(default_factory=list)
    replies: ReplyRules = Field(default_factory=ReplyRules)


class Scenario(_Spec):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")
    title: str
    tags: list[str] = Field(default_factory=list)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    contact: PersonSpec
    others: dict[str, PersonSpec] = Field(default_factory=dict)
    appointments: dict[str, AppointmentSpec] = Field(default_factory=dict)
    kickoff: KickoffSpec | None = None
    customer: CustomerSpec
    expect: Goal = Field(default_factory=Goal)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        for key, spec in self.appointments.items():
            if spec.person is not None and spec.person not in self.others:
                raise ValueError(f"appointment {key!r}: no person {spec.person!r} in others")
        if self.kickoff and self.kickoff.appointment not in (None, *self.appointments):
            raise ValueError(f"kickoff: no appointment {self.kickoff.appointment!r}")
        for key in self.expect.appointments:
            if key not in self.appointments:
                raise ValueError(f"expect.appointments: no appointment {key!r}")
        return self


def load_scenarios(paths: list[Path]) -> list[Scenario]:
    """Scenarios from YAML files and directories of them (sorted by file name)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise ScenarioError(f"{path}: no such file or directory")
    scenarios: list[Scenario] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
            scenario = Scenario.model_validate(data)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{file}: not YAML: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'scenario'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ScenarioError(f"{file}: {problems}") from exc
        if scenario.id in seen:
            raise ScenarioError(f"{file}: id {scenario.id!r} is also used by {seen[scenario.id]}")
        seen[scenario.id] = file
        scenarios.append(scenario)
    if not scenarios:
        raise ScenarioError("no scenarios found (*.yaml)")
    return scenarios


@dataclass(frozen=True)
class Clock:
    """Resolves a scenario's times against the day a trial runs, in the business's zone."""

    zone: str
    today: date

    @classmethod
    def now_in(cls, zone: str, now: datetime) -> Clock:
        return cls(zone, now.astimezone(ZoneInfo(zone)).date())

    def day(self, expression: str) -> date:
        match = _WHEN.match(_check_when(expression))
        assert match is not None
        if match["day"] == "today":
            return self.today
        if match["day"] == "tomorrow":
            return self.today + timedelta(days=1)
        if match["plus"] is not None:
            return self.today + timedelta(days=int(match["plus"]))
        if match["next"] is not None:
            ahead = (_WEEKDAYS.index(match["next"]) - self.today.weekday() - 1) % 7 + 1
            return self.today + timedelta(days=ahead)
        monday = self.today - timedelta(days=self.today.weekday())
        return monday + timedelta(weeks=int(match["weeks"]), days=_WEEKDAYS.index(match["dow"]))

    def moment(self, expression: str) -> datetime:
        """The local time an expression names (midnight when it gives none), zone-aware."""
        match = _WHEN.match(_check_when(expression))
        assert match is not None
        clock = time(int(match["hour"]), int(match["minute"])) if match["hour"] else time()
        return datetime.combine(self.day(expression), clock, tzinfo=ZoneInfo(self.zone))

    def expand(self, value: Any, ids: Mapping[str, str]) -> Any:
        """`value` with every ``{{ … }}`` placeholder filled in, through lists and mappings."""
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: self._fill(m.group(1), ids), value)
        if isinstance(value, list):
            return [self.expand(v, ids) for v in value]
        if isinstance(value, dict):
            return {k: self.expand(v, ids) for k, v in value.items()}
        return value

    def _fill(self, placeholder: str, ids: Mapping[str, str]) -> str:
        if placeholder.startswith("id "):
            key = placeholder[3:].strip()
            if key not in ids:
                raise ScenarioError(f"{{{{ id {key} }}}}: no appointment {key!r}")
            return ids[key]
        expression, _, form = (part.strip() for part in placeholder.partition("|"))
        formats: dict[str, Callable[[datetime], str]] = {
            "": lambda m: (
                m.strftime("%Y-%m-%dT%H:%M") if _has_time(expression) else m.date().isoformat()
            ),
            "date": lambda m: m.date().isoformat(),
            "weekday": lambda m: m.strftime("%A"),
            "spoken": lambda m: format_when(m, self.zone),
        }
        if form not in formats:
            raise ScenarioError(f"{{{{ {placeholder} }}}}: unknown form {form!r}")
        return formats[form](self.moment(expression))


def _has_time(expression: str) -> bool:
    match = _WHEN.match(expression.strip().lower())
    return bool(match and match["hour"])
