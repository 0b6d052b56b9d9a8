"""The inbox's contacts in SQL: search, upsert by phone in bulk, tags, removal.

A search is one SELECT whose WHERE holds every filter: columns, values inside the JSON of
`profile`, `custom_fields` and `tags` (each database's own JSON functions), and the status of
the contact's latest conversation. Pages are keyset on the id, which sorts by creation time.

Removing contacts marks them not visible in their profile: their conversations, messages and
appointments stay whole, a search leaves them out unless asked to include them, and writing
one again through the upsert puts it back in the list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, and_, cast, false, func, literal, not_, or_, true, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
    Tag,
)
from storage.types import new_id, upsert_insert, utcnow
from storage.users import find_member
from storage.workspaces import sender_numbers


class BadField(ValueError):
    """A value the request gave that cannot be used, and where it was."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.field = name
        self.message = message


# The filter tree a search query becomes.


@dataclass(frozen=True)
class Term:
    """`field:value`, or free text when `field` is None; `*` in the value matches any run of
    characters."""

    field: str | None
    value: str


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Negated:
    part: Filter


Filter = Term | AllOf | AnyOf | Negated

# Fields of the inbox kept as text in `profile`.
PROFILE_TEXT = (
    "street",
    "city",
    "state",
    "zip",
    "country",
    "company",
    "other_phone",
    "notes",
    "salesforce_object_id",
    "salesforce_object_type",
    "stuck_number",
)
# Flags kept in `profile`, and what each is when never set.
PROFILE_FLAGS = {"muted": False, "landline": False, "double_opted_in": False, "visible": True}
# What a search knows by name; any other field is a custom variable.
SEARCHABLE = frozenset(
    {
        "id",
        "name",
        "first_name",
        "last_name",
        "phone",
        "email",
        "tags",
        "status",
        "opted_out",
        "blocked",
        "priority",
        "user_id",
        *PROFILE_TEXT,
        *PROFILE_FLAGS,
    }
)
_SEPARATORS = ",.;:()/-"
_STATUSES = {s.value for s in ConversationStatus}


@dataclass(frozen=True)
class ContactSearch:
    where: Filter | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    # Leave out contacts removed from the list.
    visible_only: bool = True
    # Keyset: contacts after this id, or created after this time.
    after_id: str | None = None
    after_time: datetime | None = None
    limit: int = 30
    offset: int = 0


async def search_contacts(
    *, session: AsyncSession, workspace_id: str, search: ContactSearch
) -> tuple[list[Contact], bool]:
    """One page of the workspace's contacts matching `search`, oldest first, and whether
    more follow."""
    postgres = _postgres(session)
    conditions = [col(Contact.workspace_id) == workspace_id]
    if search.where is not None:
        conditions.append(_condition(postgres, search.where))
    if search.visible_only:
        conditions.append(_flag(postgres, "visible"))
    if search.created_from is not None:
        conditions.append(col(Contact.created_at) >= search.created_from)
    if search.created_to is not None:
        conditions.append(col(Contact.created_at) <= search.created_to)
    if search.after_id is not None:
        conditions.append(col(Contact.id) > search.after_id)
    if search.after_time is not None:
        conditions.append(col(Contact.created_at) > search.after_time)
    found = await session.exec(
        select(Contact)
        .where(*conditions)
        .order_by(col(Contact.id))
        .offset(search.offset)
        .limit(search.limit + 1)
    )
    rows = list(found.all())
    return rows[: search.limit], len(rows) > search.limit


async def remove_contacts(*, session: AsyncSession, workspace_id: str, where: Filter | None) -> int:
    """Take the matching contacts out of the list (one UPDATE); how many were in it."""
    postgres = _postgres(session)
    conditions = [col(Contact.workspace_id) == workspace_id, _flag(postgres, "visible")]
    if where is not None:
        conditions.append(_condition(postgres, where))
    profile = col(Contact.profile)
    hidden: Any = (
        cast(cast(profile, JSONB).op("||")(cast(literal('{"visible": false}'), JSONB)), JSON)
        if postgres
        else func.json_set(profile, '$."visible"', func.json("false"))
    )
    result = await session.exec(
        update(Contact).where(*conditions).values(profile=hidden, updated_at=utcnow())
    )
    return int(result.rowcount)


async def contacts_by_ids(
    *, session: AsyncSession, workspace_id: str, ids: Sequence[str], lock: bool = False
) -> list[Contact]:
    """The workspace's contacts among `ids`, in their order (others' ids are left out)."""
    query = select(Contact).where(
        col(Contact.workspace_id) == workspace_id, col(Contact.id).in_(list(ids))
    )
    if lock:
        query = query.order_by(col(Contact.id)).with_for_update()
    found = {contact.id: contact for contact in await session.exec(query)}
    return [found[i] for i in ids if i in found]


async def contact_by_phone(
    *, session: AsyncSession, workspace_id: str, phone: str
) -> Contact | None:
    found = await session.exec(
        select(Contact).where(col(Contact.workspace_id) == workspace_id, Contact.phone == phone)
    )
    return found.first()


# Writing contacts.


@dataclass
class ContactWrite:
    """What one upsert says of the contact with `phone` (E.164).

    Keys left out are left as they are. `columns` holds the row's own fields (first_name,
    last_name, email, opted_out, blocked); in `profile` and `custom`, None clears a value.
    """

    phone: str
    # Where it was in the request ("contacts.0."), to name a bad field.
    label: str
    columns: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    # A team member's id or email; "" takes the contact's owner away.
    owner: str | None = None


async def upsert_contacts(
    *, session: AsyncSession, workspace_id: str, writes: Sequence[ContactWrite]
) -> list[Contact]:
    """Create or update a contact per phone, in one transaction; one contact per phone, in
    the order first given. Raises `BadField` (and writes nothing) for an owner who is not a
    team member or a stuck number that is not one of the workspace's."""
    owners = await _owners(session, workspace_id, writes)
    numbers = {n.number for n in await sender_numbers(session=session, workspace_id=workspace_id)}
    for write in writes:
        stuck = write.profile.get("stuck_number")
        if stuck is not None and stuck not in numbers:
            raise BadField(write.label + "stuck_number", "not one of this inbox's numbers")
    phones = list(dict.fromkeys(write.phone for write in writes))
    now = utcnow()
    await session.exec(
        upsert_insert(session, Contact)
        .values(
            [
                {
                    "id": new_id("ct"),
                    "workspace_id": workspace_id,
                    "phone": phone,
                    "custom_fields": {},
                    "tags": [],
                    "profile": {},
                    "opted_out": False,
                    "blocked": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for phone in phones
            ]
        )
        .on_conflict_do_nothing(index_elements=["workspace_id", "phone"])
    )
    found = await session.exec(
        select(Contact)
        .where(col(Contact.workspace_id) == workspace_id, col(Contact.phone).in_(phones))
        .order_by(col(Contact.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    by_phone = {contact.phone: contact for contact in found}
    assigned: dict[str, str] = {}
    for write in writes:
        contact = by_phone[write.phone]
        _apply(contact, write, now)
        if write.owner is not None:
            contact.owner_user_id = owners.get(write.owner)
            if contact.owner_user_id is not None:
                assigned[contact.id] = contact.owner_user_id
    await session.flush()
    # An owner takes every conversation of the contact.
    for contact_id, user_id in assigned.items():
        await session.exec(
            update(Conversation)
            .where(col(Conversation.contact_id) == contact_id)
            .values(assignee_user_id=user_id, updated_at=now)
        )
    await define_tags(
        session=session, workspace_id=workspace_id, names=[t for w in writes for t in w.tags]
    )
    return [by_phone[phone] for phone in phones]


async def _owners(
    session: AsyncSession, workspace_id: str, writes: Sequence[ContactWrite]
) -> dict[str, str]:
    """Each owner named (by id or email) → the team member's id."""
    owners: dict[str, str] = {}
    for write in writes:
        if not write.owner or write.owner in owners:
            continue
        member = await find_member(
            session=session, workspace_id=workspace_id, id_or_email=write.owner
        )
        if member is None:
            raise BadField(
                write.label + "user_id", "no team member of this inbox has that id or email"
            )
        owners[write.owner] = member[0].id
    return owners


def _apply(contact: Contact, write: ContactWrite, now: datetime) -> None:
    for name, value in write.columns.items():
        if name == "opted_out" and bool(value) != contact.opted_out:
            contact.opted_out_at = now if value else None
            contact.opt_out_source = "inbox_api" if value else None
        setattr(contact, name, value)
    # A contact written again is back in the list, unless this write removes it.
    profile = {k: v for k, v in contact.profile.items() if k != "visible"}
    for key, value in write.profile.items():
        if value is None:
            profile.pop(key, None)
        else:
            profile[key] = value
    if profile.get("visible") is True:
        del profile["visible"]
    contact.profile = profile
    if write.custom:
        custom = dict(contact.custom_fields)
        for key, value in write.custom.items():
            if value is None:
                custom.pop(key, None)
            else:
                custom[key] = value
        contact.custom_fields = custom
    new_tags = [t for t in dict.fromkeys(write.tags) if t not in contact.tags]
    if new_tags:
        contact.tags = [*contact.tags, *new_tags]
    if write.owner == "":
        contact.owner_user_id = None
    contact.updated_at = now


# Tags.


async def define_tags(*, session: AsyncSession, workspace_id: str, names: Sequence[str]) -> None:
    """Make the names the workspace's tags (those it has already are left as they are)."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return
    now = utcnow()
    await session.exec(
        upsert_insert(session, Tag)
        .values([{"workspace_id": workspace_id, "name": n, "created_at": now} for n in unique])
        .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
    )


async def change_tag(
    *, session: AsyncSession, workspace_id: str, contact_ids: Sequence[str], tag: str, add: bool
) -> list[str]:
    """Tag (or untag) the workspace's contacts among `contact_ids`; the ids it found."""
    contacts = await contacts_by_ids(
        session=session, workspace_id=workspace_id, ids=contact_ids, lock=True
    )
    now = utcnow()
    for contact in contacts:
        if add and tag not in contact.tags:
            contact.tags = [*contact.tags, tag]
            contact.updated_at = now
        elif not add and tag in contact.tags:
            contact.tags = [t for t in contact.tags if t != tag]
            contact.updated_at = now
    await session.flush()
    if add and contacts:
        await define_tags(session=session, workspace_id=workspace_id, names=[tag])
    return [contact.id for contact in contacts]


async def list_tags(
    *, session: AsyncSession, workspace_id: str, offset: int, limit: int
) -> list[Tag]:
    """The workspace's tags, oldest first."""
    found = await session.exec(
        select(Tag)
        .where(col(Tag.workspace_id) == workspace_id)
        .order_by(col(Tag.created_at), col(Tag.name))
        .offset(offset)
        .limit(limit)
    )
    return list(found.all())


# What an answer shows of a contact besides its row.


@dataclass(frozen=True)
class ContactView:
    contact: Contact
    # The color of each tag it carries (None: no color, or not one of the workspace's tags).
    tag_colors: dict[str, str | None]
    # Who owns its latest conversation (else the contact's owner).
    current_owner: str | None
    # No text has reached the contact (none the provider took): its next one is its first.
    due_for_compliance: bool


async def describe(
    *, session: AsyncSession, workspace_id: str, contacts: Sequence[Contact]
) -> list[ContactView]:
    """The contacts with their tags' colors, owners and whether a text reached them: three
    queries for the whole page."""
    if not contacts:
        return []
    ids = [c.id for c in contacts]
    names = list({t for c in contacts for t in c.tags})
    colors: dict[str, str | None] = {}
    if names:
        found_tags = await session.exec(
            select(Tag.name, Tag.color).where(
                col(Tag.workspace_id) == workspace_id, col(Tag.name).in_(names)
            )
        )
        colors = dict(found_tags.all())
    threads = await session.exec(
        select(Conversation.contact_id, Conversation.assignee_user_id)
        .where(col(Conversation.contact_id).in_(ids))
        .order_by(col(Conversation.last_message_at).desc(), col(Conversation.id).desc())
    )
    latest: dict[str, str | None] = {}
    for contact_id, assignee in threads:
        latest.setdefault(contact_id, assignee)
    reached_rows = await session.exec(
        select(Conversation.contact_id)
        .join(Message, col(Message.conversation_id) == col(Conversation.id))
        .where(
            col(Conversation.contact_id).in_(ids),
            Message.direction == MessageDirection.OUTBOUND,
            or_(
                col(Message.status).in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
                col(Message.provider_message_id).is_not(None),
            ),
        )
        .distinct()
    )
    reached = set(reached_rows.all())
    return [
        ContactView(
            contact=c,
            tag_colors={t: colors.get(t) for t in c.tags},
            current_owner=latest.get(c.id) or c.owner_user_id,
            due_for_compliance=c.id not in reached,
        )
        for c in contacts
    ]


# Filters to SQL.


def _postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def _condition(postgres: bool, node: Filter) -> ColumnElement[bool]:
    if isinstance(node, Term):
        return _term(postgres, node)
    if isinstance(node, Negated):
        return not_(_condition(postgres, node.part))
    parts = [_condition(postgres, part) for part in node.parts]
    return and_(*parts) if isinstance(node, AllOf) else or_(*parts)


def _term(postgres: bool, term: Term) -> ColumnElement[bool]:
    name, value = term.field, term.value
    if name is None:
        return _free_text(postgres, value)
    if name == "name":
        return _words(_full_name(), value)
    if name in ("first_name", "last_name", "email"):
        return _words(getattr(Contact, name), value)
    if name == "phone":
        return _phone(col(Contact.phone), value)
    if name == "other_phone":
        return _phone(_profile(name), value)
    if name in PROFILE_TEXT:
        return _words(_profile(name), value)
    if name == "tags":
        return _has_tag(postgres, value)
    if name == "status":
        return _status(value)
    if name in ("opted_out", "blocked"):
        wanted = _boolean(name, value)
        column = col(getattr(Contact, name))
        return column.is_(True) if wanted else column.is_(False)
    if name in PROFILE_FLAGS:
        flag = _flag(postgres, name)
        return flag if _boolean(name, value) else not_(flag)
    if name == "priority":
        return _priority(postgres, value)
    if name == "user_id":
        return col(Contact.owner_user_id) == value
    if name == "id":
        return col(Contact.id) == value
    return _words(_custom(name), value)


def _pattern(value: str) -> str:
    """The value for LIKE, lower case: its own `%`, `_` and `\\` escaped, `*` any run."""
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _words(column: Any, value: str) -> ColumnElement[bool]:
    """The value is a word (or run of words) of the text: `name:Bob` finds "Bob McTest",
    `country:US` leaves "USA" out. Punctuation separates words."""
    text: Any = func.lower(func.coalesce(column, ""))
    spoken = value
    for mark in _SEPARATORS:
        text = func.replace(text, mark, " ")
        spoken = spoken.replace(mark, " ")
    spoken = " ".join(spoken.split())
    if not spoken.strip("* "):
        return column.is_not(None)  # type: ignore[no-any-return]
    padded = literal(" ").concat(text).concat(" ")
    return padded.like(f"% {_pattern(spoken)} %", escape="\\")


def _contains(column: Any, value: str) -> ColumnElement[bool]:
    return func.lower(func.coalesce(column, "")).like(f"%{_pattern(value)}%", escape="\\")


def _phone(column: Any, value: str) -> ColumnElement[bool]:
    """A whole number (E.164) is that number; anything else matches on its digits."""
    if value.startswith("+") and value[1:].isdigit():
        return column == value  # type: ignore[no-any-return]
    digits = "".join(ch for ch in value if ch.isdigit())
    if not digits:
        return false()
    return column.like(f"%{digits}%")  # type: ignore[no-any-return]


def _free_text(postgres: bool, value: str) -> ColumnElement[bool]:
    """Anywhere in the name, phone numbers, email, address, company, notes or a custom
    variable."""
    if not value.strip("*"):
        return true()
    texts: list[Any] = [
        _full_name(),
        col(Contact.email),
        *(_profile(key) for key in PROFILE_TEXT if key != "stuck_number"),
    ]
    matches = [_contains(text, value) for text in texts]
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) >= 3 and not value.strip("+()-. 0123456789"):
        matches.append(col(Contact.phone).like(f"%{digits}%"))
    each = func.json_each_text if postgres else func.json_each
    values = each(col(Contact.custom_fields)).table_valued("value")
    matches.append(select(1).select_from(values).where(_contains(values.c.value, value)).exists())
    return or_(*matches)


def _full_name() -> Any:
    return (
        func.coalesce(col(Contact.first_name), "")
        .concat(" ")
        .concat(func.coalesce(col(Contact.last_name), ""))
    )


def _profile(key: str) -> Any:
    """A text field of the profile."""
    return col(Contact.profile)[key].as_string()


def _custom(key: str) -> Any:
    return col(Contact.custom_fields)[key].as_string()


def _flag(postgres: bool, key: str) -> ColumnElement[bool]:
    """The profile's flag is set (or, never set, is set by default)."""
    stored = func.coalesce(_raw(postgres, key), _as_read(postgres, PROFILE_FLAGS[key]))
    return stored == _as_read(postgres, True)


def _priority(postgres: bool, value: str) -> ColumnElement[bool]:
    if not value.isdigit() or not 0 <= int(value) <= 5:
        raise BadField("query", "priority is a whole number from 0 to 5")
    stored = func.coalesce(_raw(postgres, "priority"), _as_read(postgres, 0))
    return stored == _as_read(postgres, int(value))


def _raw(postgres: bool, key: str) -> Any:
    """A profile value as the database reads it: JSON text in PostgreSQL, an SQL value in
    SQLite (where JSON true is 1)."""
    if postgres:
        return col(Contact.profile)[key].as_string()
    return func.json_extract(col(Contact.profile), f'$."{key}"')


def _as_read(postgres: bool, value: bool | int) -> str | int:
    return json.dumps(value) if postgres else int(value)


def _has_tag(postgres: bool, value: str) -> ColumnElement[bool]:
    each = func.json_array_elements_text if postgres else func.json_each
    names = each(col(Contact.tags)).table_valued("value")
    return (
        select(1)
        .select_from(names)
        .where(func.lower(names.c.value).like(_pattern(value), escape="\\"))
        .exists()
    )


def _status(value: str) -> ColumnElement[bool]:
    """The status of the contact's latest conversation."""
    status = value.lower()
    if status not in _STATUSES:
        raise BadField("query", f"status is one of {', '.join(sorted(_STATUSES))}")
    latest = (
        select(Conversation.status)
        .where(col(Conversation.contact_id) == col(Contact.id))
        .order_by(col(Conversation.last_message_at).desc(), col(Conversation.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    return latest == status


def _boolean(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadField("query", f"{name} is true or false")
