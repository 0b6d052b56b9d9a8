"""The send APIs of the agents businesses move from, verbatim, on the native model.

Code written against Avoca, HelloAnnie or Avaamo changes its base URL and key and nothing else:
each route takes the vendor's documented body and answers its documented envelope, and comes
down to one native `Outgoing` (agent/kickoff.py). Errors keep the service's JSON error shape.

- Avoca      POST /compat/avoca/v1/outbound/sms/send          Bearer key + X-Workspace-ID
- HelloAnnie POST /compat/helloannie/v1/sms                    Bearer key
- Avaamo     POST /compat/avaamo/sms/{channel_uuid}/send.json  the channel uuid is the key
"""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import date, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import InvalidInput, NotFound
from agent.kickoff import Outgoing, Sent, send
from agent.links import shorten_plan
from agent.phones import InvalidPhoneNumber, normalize_phone
from agent.prompting import greeting_text
from agent.schemas import AppointmentIn, ContactIn, HttpUrlText
from agent.templates import render
from agent.workspaces import hash_secret
from storage.models import MessageType
from storage.raw import Dialect, Plan
from storage.templates import get_template
from storage.types import utcnow
from storage.workspaces import find_workspace_by_channel_hash, get_workspace
from webhooks.api import authenticate, keeper
from webhooks.errors import HttpError, read_json
from webhooks.keys import DEPS, SETTINGS


def _phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(str(exc)) from exc


# Avoca


class AvocaScheduling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_at: datetime = Field(description="ISO 8601 with an offset")

    @field_validator("send_at")
    @classmethod
    def _offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with its UTC offset")
        return value


class AvocaTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=64)
    variables: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AvocaOptions(BaseModel):
    # Options this service does not know are accepted and ignored, as an upgrade-safe client
    # expects.
    model_config = ConfigDict(extra="ignore")

    shorten_urls: bool = False


class AvocaSend(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    to: str = Field(description="E.164 or standard US format")
    message: str | None = Field(default=None, min_length=1, max_length=1600)
    media_urls: list[HttpUrlText] = Field(default_factory=list, max_length=10)
    customer_id: str | None = Field(default=None, max_length=100)
    message_type: Literal["transactional", "conversational", "marketing", "alert"]
    conversation_id: str | None = Field(default=None, max_length=40)
    scheduling: AvocaScheduling | None = None
    templates: AvocaTemplate | None = None
    options: AvocaOptions = Field(default_factory=AvocaOptions)

    @field_validator("to")
    @classmethod
    def _e164(cls, value: str) -> str:
        return _phone(value)

    @model_validator(mode="after")
    def _text(self) -> AvocaSend:
        if self.message is None and self.templates is None:
            raise ValueError("give message (or templates)")
        return self


class AvocaSent(BaseModel):
    message_id: str
    status: Literal["sent", "scheduled", "failed"]
    conversation_id: str
    segments: int
    scheduled_time: datetime | None
    cost: float | None = Field(description="estimated, in cents")


class AvocaMeta(BaseModel):
    request_id: str
    timestamp: datetime


class AvocaAnswer(BaseModel):
    data: AvocaSent
    meta: AvocaMeta


async def avoca_send(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    claimed = request.headers.get("X-Workspace-ID", "").strip()
    if not hmac.compare_digest(claimed.encode(), workspace_id.encode()):
        raise HttpError(
            401,
            "workspace_mismatch",
            "send X-Workspace-ID with the id of the workspace the API key belongs to",
        )
    body = AvocaSend.model_validate(await read_json(request))
    text = body.message or ""
    if body.templates is not None:
        text = await _template_text(request, workspace_id, body.templates)
    shorten = None
    if body.options.shorten_urls:
        public_url = _public_url(request)

        def shorten(
            dialect: Dialect, text: str, conversation_id: str, message_id: str
        ) -> Plan[str]:
            return shorten_plan(
                dialect,
                text=text,
                workspace_id=workspace_id,
                conversation_id=conversation_id,
                message_id=message_id,
                public_url=public_url,
            )

    request_id = f"req_{uuid.uuid4().hex[:12]}"
    sent = await send(
        request.app[DEPS],
        workspace_id,
        Outgoing(
            to=body.to,
            text=text,
            contact=ContactIn(external_id=body.customer_id),
            message_type=MessageType(body.message_type),
            media_urls=body.media_urls,
            send_at=body.scheduling.send_at if body.scheduling else None,
            origin="avoca",
            conversation_id=body.conversation_id,
            new_thread=body.conversation_id is None,
            shorten=shorten,
        ),
        remember=keeper(request, 200, lambda sent: _avoca_answer(sent, request_id)),
    )
    return web.json_response(_avoca_answer(sent, request_id).model_dump(mode="json"))


def _avoca_answer(sent: Sent, request_id: str) -> AvocaAnswer:
    return AvocaAnswer(
        data=AvocaSent(
            message_id=sent.message_id,
            # Accepted for delivery is "sent" in Avoca's vocabulary.
            status="scheduled" if sent.send_at is not None else "sent",
            conversation_id=sent.conversation_id,
            segments=sent.segments,
            scheduled_time=sent.send_at,
            cost=sent.cost_cents,
        ),
        meta=AvocaMeta(request_id=request_id, timestamp=utcnow().replace(microsecond=0)),
    )


async def _template_text(request: web.Request, workspace_id: str, chosen: AvocaTemplate) -> str:
    async with request.app[DEPS].reads() as session:
        template = await get_template(
            session=session, workspace_id=workspace_id, template_id=chosen.id
        )
    if template is None:
        raise InvalidInput(
            f"no template {chosen.id}",
            details=[{"field": "templates.id", "message": "no such template"}],
        )
    return render(template.body, chosen.variables, field="templates.variables")


def _public_url(request: web.Request) -> str:
    configured = request.app[SETTINGS].public_url
    return configured or f"{request.scheme}://{request.host}"


# HelloAnnie


class AnniePatient(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    firstName: str | None = Field(default=None, max_length=100)
    lastName: str | None = Field(default=None, max_length=100)
    dateOfBirth: date | None = None
    patientId: str | None = Field(default=None, max_length=100)

    @field_validator("dateOfBirth", mode="before")
    @classmethod
    def _date_part(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 10 and value[10] == "T":
            return value[:10]
        return value


class AnnieAppointment(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    startTime: datetime | None = None
    endTime: datetime | None = None
    appointmentTypeId: str | None = Field(default=None, max_length=100)
    appointmentDescription: str | None = Field(default=None, max_length=500)
    appointmentId: str | None = Field(default=None, max_length=100)


class AnnieSms(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    fromNumber: str = Field(description="one of the workspace's numbers")
    toNumber: str
    message: str = Field(min_length=1, max_length=500)
    patientInfo: AnniePatient | None = None
    appointmentInfo: AnnieAppointment | None = None
    context: str | None = Field(default=None, max_length=500)

    @field_validator("fromNumber", "toNumber")
    @classmethod
    def _e164(cls, value: str) -> str:
        return _phone(value)


class AnnieStarted(BaseModel):
    conversationId: str


class AnnieAnswer(BaseModel):
    success: Literal[True] = True
    data: AnnieStarted


async def helloannie_sms(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    body = AnnieSms.model_validate(await read_json(request))
    patient = body.patientInfo or AnniePatient()
    visit = body.appointmentInfo
    try:
        appointment = (
            None
            if visit is None
            else AppointmentIn(
                external_id=visit.appointmentId,
                start=visit.startTime,
                end=visit.endTime,
                type=visit.appointmentTypeId,
                description=visit.appointmentDescription,
            )
        )
    except ValueError as exc:
        raise InvalidInput(
            "appointmentInfo: endTime must be after startTime",
            details=[{"field": "appointmentInfo.endTime", "message": "must be after startTime"}],
        ) from exc
    sent = await send(
        request.app[DEPS],
        workspace_id,
        Outgoing(
            to=body.toNumber,
            text=body.message,
            sender=body.fromNumber,
            sender_field="fromNumber",
            contact=ContactIn(
                first_name=patient.firstName,
                last_name=patient.lastName,
                date_of_birth=patient.dateOfBirth,
                external_id=patient.patientId,
            ),
            appointment=appointment,
            context=body.context,
            message_type=MessageType.TRANSACTIONAL,
            origin="helloannie",
        ),
        remember=keeper(request, 200, _annie_answer),
    )
    return web.json_response(_annie_answer(sent).model_dump(mode="json"))


def _annie_answer(sent: Sent) -> AnnieAnswer:
    return AnnieAnswer(data=AnnieStarted(conversationId=sent.conversation_id))


# Avaamo


class AvaamoSend(BaseModel):
    """`to_phone` and any custom parameters (names, ids, …), which the agent sees on every turn."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    to_phone: str = Field(description="any human format, e.g. +1 (310) 555-1234")

    @field_validator("to_phone")
    @classmethod
    def _e164(cls, value: str) -> str:
        return _phone(value)

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AvaamoAnswer(BaseModel):
    success: Literal[True] = True


# Custom parameters that are also the contact's own fields.
_AVAAMO_CONTACT = ("first_name", "last_name", "email")


async def avaamo_send(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    channel = request.match_info["channel_uuid"]
    async with deps.reads() as session:
        workspace = await find_workspace_by_channel_hash(
            session=session, channel_hash=hash_secret(channel)
        )
    if workspace is None:
        raise NotFound("no SMS channel with this uuid")
    body = AvaamoSend.model_validate(await read_json(request))
    params = body.params()
    if len(params) > 50 or len(json.dumps(params, default=str)) > 2000:
        raise InvalidInput(
            "custom parameters: at most 50, 2000 characters in all",
            details=[{"field": "body", "message": "too many custom parameters"}],
        )
    names = {
        k: str(params[k])[:100]
        for k in _AVAAMO_CONTACT
        if isinstance(params.get(k), str | int) and str(params[k]).strip()
    }
    contact = _avaamo_contact(names)
    async with deps.reads() as session:
        current = await get_workspace(session=session, workspace_id=workspace.id)
    assert current is not None
    text = greeting_text(business_name=current.business_name, variables=params)
    await send(
        deps,
        workspace.id,
        Outgoing(
            to=body.to_phone,
            text=text,
            contact=contact,
            context=_context_lines(params),
            message_type=MessageType.CONVERSATIONAL,
            origin="avaamo",
        ),
    )
    return web.json_response(AvaamoAnswer().model_dump(mode="json"))


def _avaamo_contact(names: dict[str, str]) -> ContactIn:
    try:
        return ContactIn(**names)
    except ValueError as exc:
        raise InvalidInput(
            "a contact field among the custom parameters is not valid",
            details=[{"field": k, "message": "not valid"} for k in names],
        ) from exc


def _context_lines(params: dict[str, Any]) -> str | None:
    """The custom parameters as the agent reads them, one `name: value` a line."""
    lines = [
        f"{name}: {value if isinstance(value, str) else json.dumps(value)}"
        for name, value in params.items()
    ]
    return "\n".join(lines) or None
