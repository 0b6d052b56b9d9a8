"""The public shapes: what the API accepts and what the API and the CLI give back.

Table rows never leave the service as they are; `*Out` models choose what is shown.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.phones import InvalidPhoneNumber, normalize_phone

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(str(exc)) from exc


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=254, pattern=_EMAIL)
    external_id: str | None = Field(default=None, max_length=100)
    date_of_birth: date | None = None
    timezone: str | None = None
    custom_fields: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=50
    )

    @field_validator("date_of_birth", mode="before")
    @classmethod
    def _date_part(cls, value: Any) -> Any:
        # Accept timestamps such as "1988-03-22T00:00:00.000Z" for a date of birth.
        if isinstance(value, str) and len(value) > 10 and value[10] == "T":
            return value[:10]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)


class AppointmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: str | None = Field(default=None, max_length=100)
    start: datetime | None = None
    end: datetime | None = None
    type: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> AppointmentIn:
        start, end = self.start, self.end
        comparable = start and end and _aware(start) == _aware(end)
        if comparable and end <= start:  # type: ignore[operator]
            raise ValueError("end must be after start")
        return self


class KickoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    to: str = Field(description="E.164 or any US format")
    from_: str | None = Field(default=None, alias="from")
    message: str = Field(min_length=1, max_length=1600)
    contact: ContactIn = Field(default_factory=ContactIn)
    appointment: AppointmentIn | None = None
    context: str | None = Field(default=None, max_length=2000)

    @field_validator("to", "from_")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else _phone(value)


class KickoffResult(BaseModel):
    conversation_id: str
    message_id: str
    status: str
    segments: int


class ContactOut(BaseModel):
    id: str
    phone: str
    first_name: str | None
    last_name: str | None
    email: str | None
    external_id: str | None
    tags: list[str]
    opted_out: bool
    opted_out_at: datetime | None


class AppointmentOut(BaseModel):
    id: str
    external_id: str | None
    start: datetime | None
    end: datetime | None
    type: str | None
    description: str | None
    status: str
    requested_start: datetime | None
    # Earlier times it was moved from, oldest first: {"starts_at", "ends_at", "moved_at"}.
    history: list[dict[str, Any]] = Field(default_factory=list)


class MessageOut(BaseModel):
    id: str
    direction: str
    author: str
    body: str
    status: str
    segments: int
    encoding: str | None
    cost_cents: float | None
    error_code: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class EventOut(BaseModel):
    id: str
    type: str
    data: dict[str, Any]
    revenue: float | None
    agent_run_id: str | None
    created_at: datetime


class AgentRunOut(BaseModel):
    id: str
    model: str | None
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    tool_calls: list[dict[str, Any]]
    corrections: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None
    started_at: datetime


class ConversationOut(BaseModel):
    id: str
    status: str
    mode: str
    sender_number: str
    provider: str
    context: str | None
    handoff_reason: str | None
    # The running summary of the lines older than the model's window, when there is one.
    summary: str | None = None
    created_at: datetime
    last_message_at: datetime
    contact: ContactOut
    appointment: AppointmentOut | None
    messages: list[MessageOut]
    events: list[EventOut]
    agent_runs: list[AgentRunOut]


class ConversationListItem(BaseModel):
    id: str
    status: str
    mode: str
    contact_phone: str
    contact_name: str | None
    message_count: int
    last_message_at: datetime


def _aware(moment: datetime) -> bool:
    return moment.tzinfo is not None
