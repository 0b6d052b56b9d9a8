"""Broadcasts (`/v1/broadcasts…`): one text to an audience of the inbox's contacts, drafted,
added to, published now or at a time, and counted as it goes (agent/broadcasts.py).

- `via_tags`, `via_contact_ids`, `via_phone_numbers` (any format; a number that is not a
  contact becomes one) and `via_field[field]` + `via_field[value]` each add contacts to the
  audience (an update adds to it too); `$first_name`-style variables are filled per contact.
- `message_type` (`transactional` by default, or `marketing`: only contacts who consented are
  texted) goes beyond Avochato's parameters.
- A draft's `audience` and `contacts_count` are its audience now; publishing fixes them.
  `pending_contacts_count` is how many are still to be texted. Contacts never texted (opted
  out, blocked, landlines, no marketing consent) count in `sms_errors` (`mms_errors` with
  media) by reason, with the carriers' codes of texts that failed.
- `status` is `draft`, `scheduled`, `sending` or `completed`; `scheduled_for` is 0 until the
  broadcast is published, then when it starts.
- `GET /v1/broadcasts/:id/audience_count` answers `{"data": {"count": n}}`, as documented.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import AliasChoices, AliasPath, BaseModel, Field

from agent import broadcasts as use
from agent.broadcasts import AudienceRequest, BroadcastView, Changes
from agent.schemas import HttpUrlText
from webhooks.avochato.accounts import UserOut, user_out
from webhooks.avochato.common import (
    PAGE_SIZE,
    Caller,
    Credentials,
    Paged,
    caller,
    csv,
    epoch,
    failure,
    id_list,
    inbox_route,
    moment,
    ok,
    params,
    truthy,
)
from webhooks.keys import DEPS
from webhooks.routing import Route

_PREFIX = "/compat/avochato/v1/broadcasts"
Listed = str | list[str]


# What the routes take


class _Editable(Credentials):
    media_url: HttpUrlText | None = Field(
        default=None, description="Url of media to send in MMS (500kb limit)"
    )
    status_callback: HttpUrlText | None = Field(
        default=None,
        description="Url to send status updates for each message sent by this broadcast",
    )
    name: str | None = Field(
        default=None, max_length=200, description="String, name of this broadcast"
    )
    via_tags: Listed | None = Field(
        default=None,
        description="Comma-separated list of contact tags to add to this broadcast",
    )
    via_contact_ids: Listed | None = Field(
        default=None,
        description="Comma-separated list of contact ids to add to this broadcast",
    )
    via_phone_numbers: Listed | None = Field(
        default=None,
        description="Comma-separated list of phone_numbers to add to this broadcast",
    )
    via_field_name: str | None = Field(
        default=None,
        max_length=100,
        validation_alias=AliasChoices("via_field[field]", AliasPath("via_field", "field")),
        description=(
            "String, either name, phone, phone_formatted, email, company, street, city, state, "
            "country, zip, priority, opted_out, salesforce_object_id, salesforce_object_type, "
            "OR Custom Variable name"
        ),
    )
    via_field_value: str | int | float | bool | None = Field(
        default=None,
        validation_alias=AliasChoices("via_field[value]", AliasPath("via_field", "value")),
        description="String, match all contacts with a given field which matches this value "
        "exactly",
    )
    message_type: Literal["transactional", "marketing"] | None = Field(
        default=None,
        description="marketing: only contacts who consented are texted (default transactional)",
    )


class NewBroadcast(_Editable):
    message: str = Field(
        min_length=1,
        max_length=1600,
        description="String, the Message you want to broadcast (1600 character limit)",
    )


class BroadcastUpdate(_Editable):
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=1600,
        description="String, the Message you want to broadcast (1600 character limit)",
    )


class Publish(Credentials):
    scheduled_for: float | str | None = Field(
        default=None, description="Unix timestamp, Ensure delivery at this time"
    )
    asap: bool | int | str | None = Field(
        default=None, description="Boolean, Ignore schedule_for and schedule ASAP"
    )


class BroadcastQuery(Paged):
    created_from: float | None = Field(
        default=None,
        validation_alias=AliasChoices("created_at[from]", AliasPath("created_at", "from")),
        description="Show Broadcasts created after this unix timestamp",
    )
    created_to: float | None = Field(
        default=None,
        validation_alias=AliasChoices("created_at[to]", AliasPath("created_at", "to")),
        description="Show Broadcasts created before this unix timestamp",
    )


# What they answer


class BroadcastOut(BaseModel):
    """A broadcast as a list shows it."""

    id: str
    name: str | None
    message: str
    media_url: str | None
    estimated_segments_sms: int
    estimated_segments_mms: int
    status_callback: str | None
    status: str
    created_at: float
    updated_at: float
    scheduled_for: float
    completed_at: float | None
    user: UserOut | None
    assign_to_user_id: str | None
    boost_multiplier: int


class CountedOut(BroadcastOut):
    """A broadcast with what became of its audience."""

    sms_errors: dict[str, int]
    mms_errors: dict[str, int]
    audience: int
    contacts_count: int
    attempted: int
    delivered: int
    undelivered: int
    responded: int
    replied_stop: int


class EditedOut(CountedOut):
    """A broadcast just created or changed, with the contacts still to be texted."""

    pending_contacts_count: int


class OneEdited(BaseModel):
    broadcast: EditedOut


class EditedAnswer(BaseModel):
    status: int
    data: OneEdited


class OneCounted(BaseModel):
    broadcast: CountedOut


class PublishedAnswer(BaseModel):
    status: int
    data: OneCounted


class SomeCounted(BaseModel):
    broadcasts: list[CountedOut]


class FetchedAnswer(BaseModel):
    status: int
    data: SomeCounted
    page: int


class SomeListed(BaseModel):
    broadcasts: list[BroadcastOut]


class ListedAnswer(BaseModel):
    status: int
    data: SomeListed
    page: int
    limit: int


class Count(BaseModel):
    count: int


class AudienceCountAnswer(BaseModel):
    data: Count


# The routes


@inbox_route
async def create_broadcast(request: web.Request) -> web.Response:
    who = await caller(request)
    body = NewBroadcast.model_validate(await params(request))
    broadcast_id = await use.create_broadcast(
        request.app[DEPS],
        workspace_id=who.workspace.id,
        user_id=who.user.id,
        changes=_changes(body),
    )
    return await _one(request, who, broadcast_id, EditedOut)


@inbox_route
async def update_broadcast(request: web.Request) -> web.Response:
    who = await caller(request)
    body = BroadcastUpdate.model_validate(await params(request))
    broadcast_id = request.match_info["id"]
    await use.update_broadcast(
        request.app[DEPS],
        workspace_id=who.workspace.id,
        broadcast_id=broadcast_id,
        changes=_changes(body),
    )
    return await _one(request, who, broadcast_id, EditedOut)


@inbox_route
async def publish_broadcast(request: web.Request) -> web.Response:
    who = await caller(request)
    body = Publish.model_validate(await params(request))
    asap = body.asap is not None and truthy(body.asap, name="asap")
    at = None if asap else moment(body.scheduled_for, name="scheduled_for")
    broadcast_id = request.match_info["id"]
    await use.publish_broadcast(
        request.app[DEPS], workspace_id=who.workspace.id, broadcast_id=broadcast_id, at=at
    )
    return await _one(request, who, broadcast_id, CountedOut)


@inbox_route
async def fetch_broadcasts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    ids = id_list(request.match_info["id"])
    found = await use.describe(request.app[DEPS], workspace_id=who.workspace.id, ids=ids)
    if not found:
        return _missing(ids)
    page = found[(query.page - 1) * PAGE_SIZE : query.page * PAGE_SIZE]
    return ok({"broadcasts": [_dump(view, CountedOut) for view in page]}, page=query.page)


@inbox_route
async def list_broadcasts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = BroadcastQuery.model_validate(await params(request))
    found = await use.list_page(
        request.app[DEPS],
        workspace_id=who.workspace.id,
        offset=(query.page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        created_from=moment(query.created_from, name="created_at[from]"),
        created_to=moment(query.created_to, name="created_at[to]"),
    )
    listed = [_dump(view, BroadcastOut) for view in found]
    return ok({"broadcasts": listed}, page=query.page, limit=PAGE_SIZE)


@inbox_route
async def broadcast_audience_count(request: web.Request) -> web.Response:
    who = await caller(request)
    Credentials.model_validate(await params(request))
    count = await use.audience_count(
        request.app[DEPS], workspace_id=who.workspace.id, broadcast_id=request.match_info["id"]
    )
    # As documented: the count alone, without the envelope's status.
    return web.json_response(AudienceCountAnswer(data=Count(count=count)).model_dump())


def _changes(body: NewBroadcast | BroadcastUpdate) -> Changes:
    field = None
    if body.via_field_name is not None:
        field = (body.via_field_name, _text(body.via_field_value))
    marketing = None if body.message_type is None else body.message_type == "marketing"
    return Changes(
        message=body.message,
        media_url=body.media_url,
        status_callback=body.status_callback,
        name=body.name,
        audience=AudienceRequest(
            tags=csv(body.via_tags),
            contact_ids=csv(body.via_contact_ids),
            phones=csv(body.via_phone_numbers),
            field=field,
            marketing=marketing,
        ),
    )


def _text(value: str | int | float | bool | None) -> str:
    """A field's value as the contact's JSON reads as text (true, 5, 2.5)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def _one(
    request: web.Request, who: Caller, broadcast_id: str, shape: type[BroadcastOut]
) -> web.Response:
    found = await use.describe(request.app[DEPS], workspace_id=who.workspace.id, ids=[broadcast_id])
    if not found:
        return _missing([broadcast_id])
    return ok({"broadcast": _dump(found[0], shape)})


def _missing(ids: list[str]) -> web.Response:
    return failure(404, "not_found", f"no broadcast {', '.join(ids[:10])}")


def _dump(view: BroadcastView, shape: type[BroadcastOut]) -> dict[str, Any]:
    b, counters = view.broadcast, view.counters
    values: dict[str, Any] = {
        "id": b.id,
        "name": b.name,
        "message": b.message,
        "media_url": b.media_url,
        "estimated_segments_sms": use.estimated_segments(b.message),
        "estimated_segments_mms": 1 if b.media_url else 0,
        "status_callback": b.status_callback,
        "status": b.status,
        "created_at": epoch(b.created_at) or 0.0,
        "updated_at": epoch(b.updated_at) or 0.0,
        "scheduled_for": epoch(b.scheduled_for) or 0.0,
        "completed_at": epoch(b.completed_at),
        "user": user_out(view.creator) if view.creator is not None else None,
        "assign_to_user_id": None,
        "boost_multiplier": 1,
        "sms_errors": {} if b.media_url else counters.errors,
        "mms_errors": counters.errors if b.media_url else {},
        "audience": counters.audience,
        "contacts_count": counters.audience,
        "attempted": counters.attempted,
        "delivered": counters.delivered,
        "undelivered": counters.undelivered,
        "responded": counters.responded,
        "replied_stop": counters.replied_stop,
        "pending_contacts_count": counters.waiting,
    }
    return shape.model_validate({k: values[k] for k in shape.model_fields}).model_dump(mode="json")


def routes() -> list[Route]:
    def route(method: str, path: str, handler: Any, summary: str, **shape: Any) -> Route:
        return Route(method, _PREFIX + path, handler, summary, "avochato", auth="avochato", **shape)

    return [
        route(
            "GET",
            "/{id}/audience_count",
            broadcast_audience_count,
            "Avochato's Audience Count: how many contacts a broadcast goes to",
            query=Credentials,
            responses={200: AudienceCountAnswer},
        ),
        route(
            "POST",
            "",
            create_broadcast,
            "Avochato's Create Broadcast: a draft text and the contacts it goes to",
            body=NewBroadcast,
            responses={200: EditedAnswer},
        ),
        route(
            "POST",
            "/{id}",
            update_broadcast,
            "Avochato's Update Broadcast: change a draft, add contacts to its audience",
            body=BroadcastUpdate,
            responses={200: EditedAnswer},
        ),
        route(
            "POST",
            "/{id}/publish",
            publish_broadcast,
            "Avochato's Publish Broadcast: send it now, or at scheduled_for",
            body=Publish,
            responses={200: PublishedAnswer},
        ),
        route(
            "GET",
            "/{id}",
            fetch_broadcasts,
            "Avochato's Fetch Broadcast(s): broadcasts by comma-separated ids, with counters",
            query=Paged,
            responses={200: FetchedAnswer},
        ),
        route(
            "GET",
            "",
            list_broadcasts,
            "Avochato's List Broadcasts: the inbox's broadcasts, newest first",
            query=BroadcastQuery,
            responses={200: ListedAnswer},
        ),
    ]
