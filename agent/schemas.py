"""The public shapes: what the API accepts and what the API and the CLI give back.

Table rows never leave the service as they are; `*Out` models choose what is shown.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agent.phones import InvalidPhoneNumber, normalize_phone
from storage.models import MessageType

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _offset_required(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give the time with its UTC offset, e.g. 2026-03-10T15:00:00-06:00")
    return value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) > 2000 or " " in value:
        raise ValueError("must be an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_url)]


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
    # True records the contact's consent to marketing texts (needed for `marketing`); False
    # withdraws it; left out, it stays as it was.
    marketing_consent: bool | None = None

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


Variables = dict[str, str | int | float | bool | None]


class TextRequest(BaseModel):
    """A text the business sends: its words (or a template), to whom, from which number, when."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    to: str = Field(description="E.164 or any US format")
    from_: str | None = Field(
        default=None,
        alias="from",
        description="one of the workspace's numbers (default: its first)",
    )
    message: str | None = Field(default=None, min_length=1, max_length=1600)
    template: str | None = Field(
        default=None, max_length=64, description="a template id, instead of `message`"
    )
    variables: Variables = Field(default_factory=dict, max_length=50)
    message_type: MessageType = MessageType.CONVERSATIONAL
    media_urls: list[HttpUrlText] = Field(default_factory=list, max_length=10)
    send_at: datetime | None = Field(
        default=None, description="send later (ISO 8601 with offset); quiet hours still apply"
    )
    contact: ContactIn = Field(default_factory=ContactIn)

    @field_validator("to", "from_")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else _phone(value)

    @field_validator("send_at")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        return _offset_required(value)

    @model_validator(mode="after")
    def _one_text(self) -> Self:
        if (self.message is None) == (self.template is None):
            raise ValueError("give either message or template")
        return self


class KickoffRequest(TextRequest):
    """A new thread with the customer: the text, and what the agent should know for it."""

    appointment: AppointmentIn | None = None
    context: str | None = Field(default=None, max_length=2000)


class KickoffResult(BaseModel):
    conversation_id: str
    message_id: str
    status: str = Field(description="queued, or scheduled (see send_at)")
    segments: int
    send_at: datetime | None = None


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


class MediaOut(BaseModel):
    """A photo or other file that came with a text: kept, or why not."""

    id: str
    # Its place among the text's media (the text's `media_urls`).
    position: int
    status: str  # stored, failed, too_large, refused_type
    content_type: str | None
    size_bytes: int | None
    sha256: str | None = None
    error: str | None = None
    # Where it is kept: "file" (under the media folder) or "s3", and its key there.
    storage: str | None = None
    key: str | None = None
    # Where the API gives it back (`GET /v1/media/{id}`), once kept.
    url: str | None = None


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
    media_urls: list[str] = Field(default_factory=list)
    message_type: str | None = None
    send_at: datetime | None = None
    error_message: str | None = None
    # Who wrote an outbound text a person sent (the team member's name, or the name given).
    author_name: str | None = None
    # Deleted from the inbox's view (it was still sent).
    hidden: bool = False
    # What became of each of `media_urls` (inbound texts; fetched by the turn that answers).
    media: list[MediaOut] = Field(default_factory=list)


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
    finished_at: datetime | None = None
    # The model's exact input and output, call by call (only when asked for: it is large).
    exchange: list[dict[str, Any]] | None = None


class ConversationOut(BaseModel):
    id: str
    workspace_id: str | None = None
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


class ConversationQuery(BaseModel):
    """What `GET /v1/conversations` filters on (all optional), and its page."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    status: Literal["open", "pending", "closed"] | None = None
    mode: Literal["agent", "human"] | None = None
    tag: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, description="any format")
    updated_since: datetime | None = Field(
        default=None, description="ISO 8601 with an offset: threads changed at or after it"
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(
        default=None, max_length=200, description="`next_cursor` of the page before"
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else _phone(value)

    @field_validator("updated_since", mode="before")
    @classmethod
    def _plus_kept(cls, value: Any) -> Any:
        # An unescaped "+" in a query string arrives as a space.
        return value.replace(" ", "+") if isinstance(value, str) else value

    @field_validator("updated_since")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        return _offset_required(value)


class ConversationListPage(BaseModel):
    data: list[ConversationListItem]
    # Pass as `cursor` for the next page; None on the last one.
    next_cursor: str | None = None


class MessageRequest(TextRequest):
    """A text to a phone: it continues the live thread with them, or opens one."""


class MessageSent(BaseModel):
    message_id: str
    conversation_id: str
    status: str = Field(description="queued, or scheduled (see send_at)")
    segments: int
    cost_cents: float | None
    send_at: datetime | None = None


class MessageDetail(MessageOut):
    conversation_id: str
    from_number: str
    to_number: str


class HumanReply(BaseModel):
    """A person's reply in a thread: it is sent as written and the agent stops answering."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message: str = Field(min_length=1, max_length=1600)
    author_name: str | None = Field(default=None, max_length=100)
    media_urls: list[HttpUrlText] = Field(default_factory=list, max_length=10)


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "closed"] | None = None
    mode: Literal["agent", "human"] | None = None

    @model_validator(mode="after")
    def _something(self) -> ConversationPatch:
        if self.status is None and self.mode is None:
            raise ValueError("give status and/or mode")
        return self


class ConversationState(BaseModel):
    id: str
    status: str
    mode: str
    handoff_reason: str | None


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="your id for it (default: a new tmpl_ id)",
    )
    name: str | None = Field(default=None, max_length=100)
    body: str = Field(min_length=1, max_length=1600)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=100)
    body: str = Field(min_length=1, max_length=1600)


class TemplateOut(BaseModel):
    id: str
    name: str | None
    body: str
    variables: list[str]
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    data: list[TemplateOut]


class WorkspaceIn(BaseModel):
    """A new workspace, as `smsagent workspaces create` takes it."""

    name: str = Field(min_length=1, max_length=100)
    vertical: Literal["dental", "home_services", "generic"] = "generic"
    timezone: str
    numbers: list[str] = Field(default_factory=list, max_length=20)
    business_name: str | None = Field(default=None, max_length=100)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone = _zone(value)
        assert zone is not None
        return zone

    @field_validator("numbers")
    @classmethod
    def _e164_all(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(_phone(v) for v in values))


def _aware(moment: datetime) -> bool:
    return moment.tzinfo is not None
