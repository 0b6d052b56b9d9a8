"""`POST /v1/campaigns/{key}/enroll` (Bearer key): start a phone on one of the workspace's
campaigns, as if they had texted its keyword, without waiting for them to.

The first step is sent now (in the live thread with them, or a new one; quiet hours hold it to
the morning), the later ones are scheduled; the answer lists each step's message. A campaign of
another workspace is 404, an opted-out or blocked contact 409. A contact already in the
campaign starts it over.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.campaigns import Enrolled, enroll
from agent.phones import InvalidPhoneNumber, normalize_phone
from webhooks.api import answer, authenticate, keeper
from webhooks.errors import read_json
from webhooks.keys import DEPS


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    to: str = Field(max_length=32, description="the customer's phone (US local formats accepted)")

    @field_validator("to")
    @classmethod
    def _e164(cls, value: str) -> str:
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from exc


class EnrolledStep(BaseModel):
    message_id: str
    status: str = Field(description="queued, or scheduled (see send_at)")
    send_at: datetime | None


class EnrollmentOut(BaseModel):
    enrollment_id: str
    campaign_id: str
    key: str
    conversation_id: str
    status: str = Field(description="active while steps wait, done when it had one step")
    steps: list[EnrolledStep]


def enrollment_out(enrolled: Enrolled) -> EnrollmentOut:
    return EnrollmentOut(
        enrollment_id=enrolled.enrollment_id,
        campaign_id=enrolled.campaign_id,
        key=enrolled.key,
        conversation_id=enrolled.conversation_id,
        status=enrolled.status,
        steps=[
            EnrolledStep(message_id=s.message_id, status=s.status, send_at=s.send_at)
            for s in enrolled.steps
        ],
    )


async def enroll_in_campaign(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    body = EnrollIn.model_validate(await read_json(request))
    enrolled = await enroll(
        request.app[DEPS],
        workspace_id,
        request.match_info["key"],
        body.to,
        remember=keeper(request, 201, enrollment_out),
    )
    return answer(enrollment_out(enrolled), 201)
