"""Searching the inbox's messages: the query syntax, the parameters, and what they ask of the
messages (`storage.inbox_messages.MessageFilter`).

`query`: its words must all be in the body (any case); `field:value` terms filter like the
parameters of the same name (`direction:in`, `status:delivered`, `from:+1…`, `to:…`,
`contact_id:…`, `ticket_id:…`, `sender_id:…`; scheduled messages also `aborted:true|false`,
and `aborted: false` with a space is read the same). A value with spaces goes in double quotes,
as does a phrase. A field not known is refused (422), never searched for as text. Where a term
and a parameter both name a field, the parameter wins.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.phones import InvalidPhoneNumber, normalize_phone
from storage.inbox_messages import MessageFilter
from storage.models import MessageDirection, MessageStatus
from storage.types import utcnow
from webhooks.avochato.common import Paged, moment, truthy
from webhooks.avochato.message_shapes import GONE
from webhooks.errors import HttpError

# Avochato's status names -> ours (a received text was delivered, to us).
_STATUSES: dict[str, tuple[str, ...]] = {
    "queued": (MessageStatus.QUEUED,),
    "sending": (MessageStatus.SENDING,),
    "sent": (MessageStatus.SENT,),
    "delivered": (MessageStatus.DELIVERED, MessageStatus.RECEIVED),
    "received": (MessageStatus.RECEIVED,),
    "undelivered": (MessageStatus.UNDELIVERED,),
    "failed": (MessageStatus.FAILED,),
    "scheduled": (MessageStatus.SCHEDULED,),
    "canceled": (MessageStatus.CANCELED,),
    "cancelled": (MessageStatus.CANCELED,),
}
_TERM = re.compile(r'([A-Za-z_]+):\s*(?:"([^"]*)"|(\S+))|"([^"]*)"|(\S+)')


def search_terms(query: str | None, fields: frozenset[str]) -> tuple[list[str], dict[str, str]]:
    """`query` as its free words and its `field:value` terms (a field named twice: the last);
    a field not in `fields` is refused (422)."""
    words: list[str] = []
    terms: dict[str, str] = {}
    for match in _TERM.finditer(query or ""):
        name, quoted, bare, phrase, word = match.groups()
        if name is None:
            text = phrase if phrase is not None else word
            if text and text.strip():
                words.append(text.strip())
            continue
        key = name.lower()
        if key not in fields:
            raise HttpError(
                422,
                "validation_error",
                f"query: no search field {name!r}; fields: {', '.join(sorted(fields))}",
            )
        terms[key] = quoted if quoted is not None else bare
    return words, terms


def phone_of(value: str, *, name: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise HttpError(422, "validation_error", f"{name}: {exc}") from exc


def statuses_of(value: str) -> tuple[str, ...]:
    found = _STATUSES.get(value.strip().lower())
    if found is None:
        raise HttpError(
            422, "validation_error", f"status must be one of {', '.join(sorted(_STATUSES))}"
        )
    return found


Epoch = float | str


class Ranged(Paged):
    @model_validator(mode="before")
    @classmethod
    def _rails_keys(cls, value: Any) -> Any:
        """`created_at[from]` arrives nested (`{"created_at": {"from": …}}`): name it again."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict):
                flat.update({f"{key}[{sub}]": inner for sub, inner in item.items()})
            else:
                flat[key] = item
        return flat


class _Where(Ranged):
    query: str | None = Field(default=None, max_length=500, description="Query to search with")
    from_: str | None = Field(default=None, alias="from", max_length=32, description="Sent from")
    to: str | None = Field(default=None, max_length=32, description="Sent to")
    contact_id: str | None = Field(default=None, max_length=64, description="The contact's")
    ticket_id: str | None = Field(default=None, max_length=64, description="In this ticket")
    sender_id: str | None = Field(default=None, max_length=64, description="Sent by this user")
    created_from: Epoch | None = Field(
        default=None, alias="created_at[from]", description="Created after (epoch seconds)"
    )
    created_to: Epoch | None = Field(
        default=None, alias="created_at[to]", description="Created before (epoch seconds)"
    )


class MessageSearch(_Where):
    direction: Literal["in", "out", ""] | None = Field(
        default=None, description='"in" for received messages, "out" for sent ones'
    )
    status: str | None = Field(
        default=None, max_length=20, description="queued, sent, delivered, undelivered, failed"
    )


class ScheduledSearch(_Where):
    scheduled_from: Epoch | None = Field(
        default=None, alias="scheduled_for[from]", description="To go after (default: now)"
    )
    scheduled_to: Epoch | None = Field(
        default=None, alias="scheduled_for[to]", description="To go before (default: a year on)"
    )


_FIELDS = frozenset({"direction", "status", "from", "to", "contact_id", "ticket_id", "sender_id"})
_SCHEDULED_FIELDS = (_FIELDS - {"direction", "status"}) | {"aborted"}


def _filter(query: _Where, terms: dict[str, str], words: list[str]) -> dict[str, Any]:
    """What the parameters and the query's terms (the parameters win) ask of every message."""
    given = {
        "from": query.from_,
        "to": query.to,
        "contact_id": query.contact_id,
        "ticket_id": query.ticket_id,
        "sender_id": query.sender_id,
    }
    values = {**terms, **{key: value for key, value in given.items() if value}}
    return {
        "words": words,
        "from_number": phone_of(values["from"], name="from") if values.get("from") else None,
        "to_number": phone_of(values["to"], name="to") if values.get("to") else None,
        "contact_id": values.get("contact_id") or None,
        "conversation_id": values.get("ticket_id") or None,
        "sender_user_id": values.get("sender_id") or None,
        "created_from": moment(query.created_from, name="created_at[from]"),
        "created_to": moment(query.created_to, name="created_at[to]"),
    }


def message_filter(query: MessageSearch) -> MessageFilter:
    words, terms = search_terms(query.query, _FIELDS)
    direction = query.direction or terms.get("direction") or None
    if direction not in (None, "in", "out"):
        raise HttpError(422, "validation_error", 'direction must be "in" or "out"')
    status = query.status or terms.get("status") or None
    return MessageFilter(
        direction=None
        if direction is None
        else (MessageDirection.INBOUND if direction == "in" else MessageDirection.OUTBOUND),
        statuses=statuses_of(status) if status else (),
        **_filter(query, terms, words),
    )


def scheduled_filter(query: ScheduledSearch) -> MessageFilter:
    words, terms = search_terms(query.query, _SCHEDULED_FIELDS)
    now = utcnow()
    aborted = terms.get("aborted")
    statuses: tuple[str, ...] = ()
    if aborted is not None:
        statuses = (
            (MessageStatus.CANCELED,)
            if truthy(aborted, name="aborted")
            else (MessageStatus.SCHEDULED, *GONE)
        )
    return MessageFilter(
        statuses=statuses,
        scheduled=True,
        scheduled_from=moment(query.scheduled_from, name="scheduled_for[from]") or now,
        scheduled_to=moment(query.scheduled_to, name="scheduled_for[to]")
        or now + timedelta(days=365),
        **_filter(query, terms, words),
    )
