"""Tags (`/v1/tags`, `/v1/contacts/:ids/tags`): tag and untag contacts by id or phone, and
list the inbox's tags.

Tagging a contact makes the name one of the inbox's tags (`GET /v1/tags`, oldest first);
untagging leaves the tag defined. Ids of another inbox's contacts are left out of the answer
and never changed; when none of the ids (or no contact with the phone) is the inbox's, the
answer is 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from agent.phones import InvalidPhoneNumber, normalize_phone
from storage import inbox_contacts as store
from webhooks.avochato.common import (
    PAGE_SIZE,
    Credentials,
    Paged,
    caller,
    id_list,
    inbox_route,
    ok,
    params,
)
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.routing import Route

MAX_TAG = 100


def tag_name(value: str, field: str) -> str:
    """A tag's name as given (trimmed), or a 422 naming `field`."""
    name = value.strip()
    problem = None
    if not name:
        problem = "a tag needs a name"
    elif len(name) > MAX_TAG:
        problem = f"a tag's name is at most {MAX_TAG} characters"
    elif "," in name:
        problem = "a tag's name cannot hold a comma (tags are given as CSV)"
    if problem is not None:
        raise HttpError(
            422,
            "validation_error",
            f"invalid fields: {field}",
            details=[{"field": field, "message": problem}],
        )
    return name


class TagChange(Credentials):
    tag: str = Field(min_length=1, max_length=MAX_TAG, description="Tag to add or remove")


class PhoneTagChange(TagChange):
    phone: str = Field(min_length=1, max_length=40, description="Phone number of the Contact")

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str) -> str:
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from exc


class Tagged(BaseModel):
    action: str
    tag: str
    ids: list[str]


class TaggedAnswer(BaseModel):
    status: int
    data: Tagged


class TagOut(BaseModel):
    name: str


class TagList(BaseModel):
    tags: list[TagOut]
    # The last tag's name on this page (null when the page is empty).
    last_key: str | None


class TagsAnswer(BaseModel):
    status: int
    data: TagList
    limit: int


async def _change(request: web.Request, *, add: bool, by_phone: bool) -> web.Response:
    who = await caller(request)
    p = await params(request)
    change: TagChange = (PhoneTagChange if by_phone else TagChange).model_validate(p)
    tag = tag_name(change.tag, "tag")
    async with request.app[DEPS].sessions() as session, session.begin():
        if isinstance(change, PhoneTagChange):
            contact = await store.contact_by_phone(
                session=session, workspace_id=who.workspace.id, phone=change.phone
            )
            ids = [contact.id] if contact is not None else []
        else:
            ids = id_list(request.match_info["ids"])
        changed = await store.change_tag(
            session=session, workspace_id=who.workspace.id, contact_ids=ids, tag=tag, add=add
        )
    if not changed:
        raise HttpError(404, "not_found", "no contact of this inbox is the one named")
    return ok({"action": "tagged" if add else "untagged", "tag": tag, "ids": changed})


@inbox_route
async def tag_contacts(request: web.Request) -> web.Response:
    return await _change(request, add=True, by_phone=False)


@inbox_route
async def untag_contacts(request: web.Request) -> web.Response:
    return await _change(request, add=False, by_phone=False)


@inbox_route
async def tag_by_phone(request: web.Request) -> web.Response:
    return await _change(request, add=True, by_phone=True)


@inbox_route
async def untag_by_phone(request: web.Request) -> web.Response:
    return await _change(request, add=False, by_phone=True)


@inbox_route
async def list_tags(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        tags = await store.list_tags(
            session=session,
            workspace_id=who.workspace.id,
            offset=(query.page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    data = {"tags": [{"name": t.name} for t in tags], "last_key": tags[-1].name if tags else None}
    return ok(data, limit=PAGE_SIZE)


def routes() -> list[Route]:
    def route(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Route:
        return Route(
            method,
            "/compat/avochato/v1" + path,
            handler,
            summary,
            "avochato",
            auth="avochato",
            **kw,
        )

    return [
        route(
            "POST",
            "/contacts/{ids}/tags",
            tag_contacts,
            "Avochato's Add Tag: tag contacts by their comma-separated ids",
            body=TagChange,
            responses={200: TaggedAnswer},
        ),
        route(
            "DELETE",
            "/contacts/{ids}/tags",
            untag_contacts,
            "Avochato's Remove Tag: untag contacts by their comma-separated ids",
            body=TagChange,
            responses={200: TaggedAnswer},
        ),
        route(
            "POST",
            "/tags",
            tag_by_phone,
            "Avochato's Add Tag (Phone): tag the contact with this phone number",
            body=PhoneTagChange,
            responses={200: TaggedAnswer},
        ),
        route(
            "DELETE",
            "/tags",
            untag_by_phone,
            "Avochato's Remove Tag (Phone): untag the contact with this phone number",
            body=PhoneTagChange,
            responses={200: TaggedAnswer},
        ),
        route(
            "GET",
            "/tags",
            list_tags,
            "Avochato's List All Tags: the inbox's tags, oldest first",
            query=Paged,
            responses={200: TagsAnswer},
        ),
    ]
