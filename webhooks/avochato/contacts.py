"""Contacts (`/v1/contacts`): fetch by ids, list and search, upsert by phone, remove.

A contact's `name` is our first and last name (split on the first space, joined back); the
inbox's other fields live in its profile, custom variables in its custom fields and appear at
the top level of the contact. With `allow_empty_fields` left at 0, an empty or null value
leaves the field as it was; with 1 it clears the field.

Search queries take Avochato's syntax: `field:value` or `field:"two words"`, free text, `*`
(anything), terms joined by AND (or nothing) and OR, `-term` or `NOT term`, parentheses. Known
fields: name, first_name, last_name, phone, other_phone, email, street, city, state, zip,
country, company, notes, salesforce_object_id, salesforce_object_type, stuck_number, tags (or
tag), status (of the latest conversation), opted_out, blocked, muted, landline,
double_opted_in, visible, priority, user_id (or owner), id; any other field is a custom
variable. A field's value matches whole words, case aside (`*` for any run of characters);
free text matches anywhere.

Removing contacts (`remove_all`, or `visible=0`) takes them out of the list and keeps their
conversations: see `storage/inbox_contacts.py`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
)

from agent.phones import InvalidPhoneNumber, normalize_phone
from storage import inbox_contacts as store
from storage.inbox_contacts import (
    AllOf,
    AnyOf,
    BadField,
    ContactSearch,
    ContactView,
    ContactWrite,
    Filter,
    Negated,
    Term,
)
from webhooks.avochato.common import (
    PAGE_SIZE,
    Credentials,
    Paged,
    caller,
    csv,
    epoch,
    id_list,
    inbox_route,
    ok,
    params,
)
from webhooks.avochato.tags import tag_name
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.routing import Route

log = logging.getLogger("smsagent.inbox")

MAX_LIMIT = 100
_LATEST_EPOCH = 253_402_300_799  # 9999-12-31
_CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")
# Answers' own keys: a custom variable cannot take one of their names.
_READ_ONLY = frozenset(
    {"id", "address", "created_at", "tag_details", "current_owner", "due_for_compliance"}
)


# Answers.


class TagDetail(BaseModel):
    name: str
    color: str | None
    duration: int | None
    routable: bool | None


class InboxContact(BaseModel):
    """A contact as the inbox shows one; each custom variable is a key of its own."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None
    phone: str
    email: str | None
    street: str | None
    city: str | None
    state: str | None
    zip: str | None
    country: str | None
    address: str | None
    notes: str | None
    company: str | None
    other_phone: str | None
    created_at: float
    tags: list[str]
    tag_details: list[TagDetail]
    opted_out: bool
    double_opted_in: bool
    muted: bool
    blocked: bool
    salesforce_object_type: str | None
    salesforce_object_id: str | None
    priority: int
    user_id: str | None
    visible: bool
    current_owner: str | None
    # Nothing has reached the contact yet: the next text is its first.
    due_for_compliance: bool


class ContactList(BaseModel):
    contacts: list[InboxContact]


class ContactsAnswer(BaseModel):
    status: int
    data: ContactList
    page: int


class ContactPage(ContactList):
    size: int
    # Give it as `after_page` for the next page; null on the last.
    next_page: str | None


class ContactPageAnswer(BaseModel):
    status: int
    data: ContactPage
    limit: int
    page: int | None = None
    after_page: str | None = None


class Upserted(BaseModel):
    # The last contact written; `contacts` holds each when more than one was given.
    contact: InboxContact
    contacts: list[InboxContact] | None = None


class UpsertAnswer(BaseModel):
    status: int
    data: Upserted


class Removed(BaseModel):
    account: str | None
    query: str


class RemovedAnswer(BaseModel):
    status: int
    data: Removed


# Requests.


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Flag = Annotated[bool | None, BeforeValidator(_blank_is_none)]


def _custom_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("a custom variable holds at most 1000 characters")
        return value
    raise ValueError("a custom variable is text, a number, true or false")


CustomValue = Annotated[
    Any, PlainValidator(_custom_value, json_schema_input_type=str | int | float | bool | None)
]


class ContactFields(BaseModel):
    """A contact's fields as an upsert gives them; any other key is a custom variable."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)
    __pydantic_extra__: dict[str, CustomValue] = Field(init=False)

    name: str | None = Field(default=None, max_length=200, description="Name of the Contact")
    email: str | None = Field(default=None, max_length=254, description="Email for the Contact")
    other_phone: str | None = Field(default=None, max_length=40, description="Other phone")
    company: str | None = Field(default=None, max_length=255, description="Company Name")
    street: str | None = Field(default=None, max_length=255, description="Street")
    city: str | None = Field(default=None, max_length=255, description="City")
    state: str | None = Field(default=None, max_length=255, description="State")
    zip: str | None = Field(default=None, max_length=40, description="Zip Code")
    country: str | None = Field(default=None, max_length=255, description="Country")
    notes: str | None = Field(default=None, max_length=5000, description="Notes on the Contact")
    opted_out: Flag = Field(default=None, description="Opted out: nothing is sent to it")
    double_opted_in: Flag = Field(default=None, description="Double opt-in status, 0 or 1")
    muted: Flag = Field(default=None, description="Mute or unmute the Contact, 0 or 1")
    blocked: Flag = Field(default=None, description="Block or unblock the Contact, 0 or 1")
    priority: Annotated[int | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, ge=0, le=5, description="Priority from 0 to 5, 5 is the greatest"
    )
    visible: Flag = Field(default=None, description="0 removes the Contact from the list")
    landline: Flag = Field(default=None, description="1: a landline, never texted")
    tags: str | list[Annotated[str, Field(max_length=100)]] | None = Field(
        default=None, max_length=2000, description="CSV of tags to apply to the Contact"
    )
    user_id: str | None = Field(
        default=None, max_length=254, description="Id or email of the team member who owns it"
    )
    salesforce_object_id: str | None = Field(default=None, max_length=255)
    salesforce_object_type: str | None = Field(default=None, max_length=255)
    stuck_number: str | None = Field(
        default=None, max_length=40, description="Send from this number of the inbox (E.164)"
    )
    allow_empty_fields: Flag = Field(
        default=None, description="1: empty or null values clear fields (default 0)"
    )

    @field_validator("phone", "other_phone", "stuck_number", check_fields=False)
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if not value:
            return value
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise ValueError("not an email address")
        return value


class ContactIn(ContactFields):
    phone: str = Field(min_length=1, max_length=40, description="Phone number of the Contact")


class ContactsUpsert(ContactFields, Credentials):
    """Many contacts as `contacts[n][field]`, or one with its fields at the top level."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    phone: str | None = Field(
        default=None, max_length=40, description="Phone number of the Contact (one contact)"
    )
    contacts: list[ContactIn] | None = Field(
        default=None, min_length=1, max_length=100, description="List of Contacts"
    )


class ContactQuery(Credentials):
    query: str | None = Field(
        default=None, max_length=500, description="String to search Contacts with"
    )
    created_from: float | None = Field(
        default=None,
        alias="created_at[from]",
        ge=0,
        le=_LATEST_EPOCH,
        description="Contacts created after this Unix time",
    )
    created_to: float | None = Field(
        default=None,
        alias="created_at[to]",
        ge=0,
        le=_LATEST_EPOCH,
        description="Contacts created before this Unix time",
    )
    after_page: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="The `next_page` of the last answer, or a Unix time (seconds or ms)",
    )
    limit: int = Field(default=PAGE_SIZE, ge=1, le=MAX_LIMIT, description="Records to return")
    page: int = Field(default=1, ge=1, le=100_000, description="Page to request")
    visible: bool = Field(default=True, description="false: include removed contacts")


class RemoveAll(Credentials):
    query: str | None = Field(
        default=None, max_length=500, description="Remove only the contacts matching it"
    )


# The query syntax.

_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<minus>-(?=[^\s()]))"
    r'|(?P<field>[A-Za-z_][A-Za-z0-9_\-]*):\s*(?:"(?P<fquoted>[^"]*)"?|(?P<fword>[^\s()"]+))?'
    r'|"(?P<quoted>[^"]*)"?|(?P<word>[^\s()"]+))'
)
_ALIASES = {"tag": "tags", "owner": "user_id"}
_MAX_TERMS = 20
_MAX_DEPTH = 8


class _Parser:
    """Recursive descent: OR of ANDs of (negated) terms or groups."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, Any]] = []
        text = text.strip()
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise _bad("cannot read the query")
            pos = match.end()
            self.tokens.append(_token(match))
        if sum(kind == "term" for kind, _ in self.tokens) > _MAX_TERMS:
            raise _bad(f"at most {_MAX_TERMS} terms")
        self.at = 0

    def parse(self) -> Filter:
        node = self._any(0)
        if self.at < len(self.tokens):
            raise _bad("a closing parenthesis has no opening one")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def _any(self, depth: int) -> Filter:
        parts = [self._all(depth)]
        while self._peek() == "OR":
            self.at += 1
            parts.append(self._all(depth))
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def _all(self, depth: int) -> Filter:
        parts = [self._one(depth)]
        while self._peek() not in (None, "OR", "close"):
            if self._peek() == "AND":
                self.at += 1
            parts.append(self._one(depth))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def _one(self, depth: int) -> Filter:
        kind = self._peek()
        if kind is None:
            raise _bad("the query ends where a term was expected")
        value = self.tokens[self.at][1]
        self.at += 1
        if kind in ("NOT", "minus"):
            return Negated(self._one(depth))
        if kind == "open":
            if depth >= _MAX_DEPTH:
                raise _bad("parentheses nest too deep")
            node = self._any(depth + 1)
            if self._peek() != "close":
                raise _bad("an opening parenthesis is not closed")
            self.at += 1
            return node
        if kind == "term":
            assert isinstance(value, Term)
            return value
        raise _bad(f"{kind} where a term was expected")


def _token(match: re.Match[str]) -> tuple[str, Any]:
    if match["open"]:
        return ("open", None)
    if match["close"]:
        return ("close", None)
    if match["minus"]:
        return ("minus", None)
    if match["field"]:
        name = match["field"].lower()
        value = match["fquoted"] if match["fquoted"] is not None else match["fword"]
        if not value or not value.strip():
            raise _bad(f"{name}: give a value")
        name = _ALIASES.get(name, name)
        if name in ("phone", "other_phone") and "*" not in value:
            with contextlib.suppress(InvalidPhoneNumber):
                value = normalize_phone(value)
        return ("term", Term(name, value.strip()))
    word = match["quoted"] if match["quoted"] is not None else match["word"]
    if match["word"] in ("OR", "AND", "NOT"):
        return (match["word"], None)
    if not word.strip():
        raise _bad("an empty phrase")
    return ("term", Term(None, word.strip()))


def _bad(message: str) -> BadField:
    return BadField("query", message)


def parse_query(text: str | None) -> Filter | None:
    """Avochato's query syntax as a filter; None (everyone) for nothing or `*`."""
    if text is None or text.strip() in ("", "*"):
        return None
    return _Parser(text).parse()


# Answers from rows, writes from requests.


def contact_out(view: ContactView) -> dict[str, Any]:
    contact, profile = view.contact, view.contact.profile

    def text(key: str) -> str | None:
        value = profile.get(key)
        return None if value is None or value == "" else str(value)

    parts = (text(key) for key in ("street", "city", "state", "zip", "country"))
    priority = profile.get("priority")
    out = InboxContact(
        id=contact.id,
        name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
        phone=contact.phone,
        email=contact.email,
        street=text("street"),
        city=text("city"),
        state=text("state"),
        zip=text("zip"),
        country=text("country"),
        address=", ".join(p for p in parts if p) or None,
        notes=text("notes"),
        company=text("company"),
        other_phone=text("other_phone"),
        created_at=epoch(contact.created_at) or 0.0,
        tags=list(contact.tags),
        tag_details=[
            TagDetail(name=t, color=view.tag_colors.get(t), duration=None, routable=False)
            for t in contact.tags
        ],
        opted_out=contact.opted_out,
        double_opted_in=profile.get("double_opted_in") is True,
        muted=profile.get("muted") is True,
        blocked=contact.blocked,
        salesforce_object_type=text("salesforce_object_type"),
        salesforce_object_id=text("salesforce_object_id"),
        priority=priority if isinstance(priority, int) else 0,
        user_id=contact.owner_user_id,
        visible=profile.get("visible") is not False,
        current_owner=view.current_owner,
        due_for_compliance=view.due_for_compliance,
    ).model_dump(mode="json")
    return {**out, **{k: v for k, v in contact.custom_fields.items() if k not in out}}


def _write(label: str, phone: str, fields: ContactFields, allow_empty: bool) -> ContactWrite:
    if fields.allow_empty_fields is not None:
        allow_empty = fields.allow_empty_fields
    given = fields.model_fields_set
    write = ContactWrite(phone=phone, label=label)

    def wanted(name: str) -> bool:
        return name in given and (allow_empty or getattr(fields, name) not in (None, ""))

    if wanted("name"):
        first, _, last = (fields.name or "").strip().partition(" ")
        write.columns.update(first_name=first or None, last_name=last.strip() or None)
    if wanted("email"):
        write.columns["email"] = fields.email or None
    for name in ("opted_out", "blocked"):
        if getattr(fields, name) is not None:
            write.columns[name] = getattr(fields, name)
    for name in store.PROFILE_TEXT:
        if wanted(name):
            write.profile[name] = getattr(fields, name) or None
    for name in (*store.PROFILE_FLAGS, "priority"):
        if getattr(fields, name) is not None:
            write.profile[name] = getattr(fields, name)
    if fields.tags is not None:
        write.tags = [tag_name(t, f"{label}tags") for t in csv(fields.tags)]
    if wanted("user_id"):
        write.owner = fields.user_id or ""
    for key, value in (fields.model_extra or {}).items():
        if key in _READ_ONLY or not _CUSTOM_KEY.match(key):
            raise HttpError(
                422,
                "validation_error",
                f"invalid fields: {label}{key}",
                details=[{"field": f"{label}{key}", "message": _custom_key_problem(key)}],
            )
        if allow_empty or value not in (None, ""):
            write.custom[key] = value
    return write


def _custom_key_problem(key: str) -> str:
    if key in _READ_ONLY:
        return "read-only"
    return "a custom variable's name is 1-64 letters, digits, _ or -"


def _invalid(exc: BadField) -> HttpError:
    return HttpError(
        422,
        "validation_error",
        f"invalid fields: {exc.field}",
        details=[{"field": exc.field, "message": exc.message}],
    )


def _search(query: ContactQuery) -> ContactSearch:
    """The search a request asks for; `after_page` is a contact id or a Unix time."""
    after_id = after_time = None
    if query.after_page is not None:
        if re.fullmatch(r"\d+(\.\d+)?", query.after_page):
            seconds = float(query.after_page)
            # Milliseconds, as the list's own documentation has it, when too large for seconds.
            seconds = seconds / 1000 if seconds > 100_000_000_000 else seconds
            after_time = _time(min(seconds, _LATEST_EPOCH))
        else:
            after_id = query.after_page
    return ContactSearch(
        where=parse_query(query.query),
        created_from=_time(query.created_from),
        created_to=_time(query.created_to),
        visible_only=query.visible,
        after_id=after_id,
        after_time=after_time,
        limit=query.limit,
        offset=0 if query.after_page else (query.page - 1) * query.limit,
    )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _query_params(raw: dict[str, Any]) -> dict[str, Any]:
    """`created_at[from]` arrives nested; the query model names it flat."""
    flat = dict(raw)
    created = flat.pop("created_at", None)
    if isinstance(created, dict):
        flat["created_at[from]"] = created.get("from")
        flat["created_at[to]"] = created.get("to")
    elif created not in (None, ""):
        raise HttpError(
            422,
            "validation_error",
            "invalid fields: created_at",
            details=[
                {"field": "created_at", "message": "give created_at[from] and created_at[to]"}
            ],
        )
    return {k: v for k, v in flat.items() if v not in (None, "")}


# Handlers.


@inbox_route
async def fetch_contacts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    ids = id_list(request.match_info["ids"])
    async with request.app[DEPS].reads() as session:
        found = await store.contacts_by_ids(session=session, workspace_id=who.workspace.id, ids=ids)
        if not found:
            raise HttpError(404, "not_found", "no contact of this inbox has those ids")
        start = (query.page - 1) * PAGE_SIZE
        views = await store.describe(
            session=session,
            workspace_id=who.workspace.id,
            contacts=found[start : start + PAGE_SIZE],
        )
    return ok({"contacts": [contact_out(v) for v in views]}, page=query.page)


@inbox_route
async def list_contacts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = ContactQuery.model_validate(_query_params(await params(request)))
    try:
        search = _search(query)
        async with request.app[DEPS].reads() as session:
            found, more = await store.search_contacts(
                session=session, workspace_id=who.workspace.id, search=search
            )
            views = await store.describe(
                session=session, workspace_id=who.workspace.id, contacts=found
            )
    except BadField as exc:
        raise _invalid(exc) from exc
    data = {
        "contacts": [contact_out(v) for v in views],
        "size": len(views),
        "next_page": found[-1].id if more and found else None,
    }
    if query.after_page is not None:
        return ok(data, limit=query.limit, after_page=query.after_page)
    return ok(data, page=query.page, limit=query.limit)


@inbox_route
async def remove_all(request: web.Request) -> web.Response:
    who = await caller(request)
    body = RemoveAll.model_validate(await params(request))
    try:
        where = parse_query(body.query)
        async with request.app[DEPS].sessions() as session, session.begin():
            removed = await store.remove_contacts(
                session=session, workspace_id=who.workspace.id, where=where
            )
    except BadField as exc:
        raise _invalid(exc) from exc
    log.info(
        "inbox.contacts_removed workspace_id=%s user_id=%s count=%d filtered=%s",
        who.workspace.id,
        who.user.id,
        removed,
        where is not None,
    )
    return ok({"account": who.workspace.subdomain, "query": (body.query or "").strip() or "*"})


@inbox_route
async def upsert_contacts(request: web.Request) -> web.Response:
    who = await caller(request)
    body = ContactsUpsert.model_validate(await params(request))
    allow_empty = bool(body.allow_empty_fields)
    if body.contacts is not None:
        writes = [
            _write(f"contacts.{i}.", c.phone, c, allow_empty) for i, c in enumerate(body.contacts)
        ]
    elif body.phone:
        writes = [_write("", body.phone, body, allow_empty)]
    else:
        raise HttpError(
            422,
            "validation_error",
            "invalid fields: contacts",
            details=[{"field": "contacts", "message": "give contacts[n][phone], or phone"}],
        )
    try:
        async with request.app[DEPS].sessions() as session, session.begin():
            written = await store.upsert_contacts(
                session=session, workspace_id=who.workspace.id, writes=writes
            )
            views = await store.describe(
                session=session, workspace_id=who.workspace.id, contacts=written
            )
    except BadField as exc:
        raise _invalid(exc) from exc
    shown = [contact_out(v) for v in views]
    data: dict[str, Any] = {"contact": shown[-1]}
    if len(shown) > 1:
        data["contacts"] = shown
    return ok(data)


def routes() -> list[Route]:
    def route(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Route:
        return Route(
            method,
            "/compat/avochato/v1/contacts" + path,
            handler,
            summary,
            "avochato",
            auth="avochato",
            **kw,
        )

    return [
        route(
            "GET",
            "",
            list_contacts,
            "Avochato's List and Search Contacts: a page, by query and creation time",
            query=ContactQuery,
            responses={200: ContactPageAnswer},
        ),
        route(
            "POST",
            "",
            upsert_contacts,
            "Avochato's Update Contacts: create or update contacts by phone number",
            body=ContactsUpsert,
            responses={200: UpsertAnswer},
        ),
        route(
            "DELETE",
            "/remove_all",
            remove_all,
            "Avochato's Remove all contacts: out of the list, conversations kept",
            body=RemoveAll,
            responses={200: RemovedAnswer},
        ),
        route(
            "GET",
            "/{ids}",
            fetch_contacts,
            "Avochato's Fetch Contacts: contacts by their comma-separated ids",
            query=Paged,
            responses={200: ContactsAnswer},
        ),
    ]
