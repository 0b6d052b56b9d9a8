"""Users (`/v1/users…`): an inbox's team, added, listed, changed, disabled and removed.

Who may do what, by the caller's role in the inbox the request acts in:

- Any member: list the team, fetch a member, list the inboxes a member shares with the caller.
- Managers and owners: add users, change roles, disable, enable and remove members, and ask for
  a member's password reset. A manager can neither make an owner (by adding or promoting) nor
  change, disable, enable, remove or reset the password of one.
- Everyone may ask for their own password reset and set their own MFA phone; setting another
  member's MFA phone takes an owner (the highest level there is here).
- An inbox keeps at least one enabled owner: its last one cannot be demoted, disabled or
  removed (409 `last_owner`).

A user is named by id or email, in the path or by the `email` parameter (which wins). A user who
is not a member of the inbox is 404, exactly as one that does not exist. Adding an email that
is already a member is 409 `already_member`; an email of a user elsewhere adds that user (their
name is kept), a new email makes a user, without credentials, whose home is this inbox.

Nothing is mailed or texted from here: a password reset and an MFA phone are recorded in the
user's `requests` (`{"kind", "at", "workspace_id", "by", …}`, the latest 50) for whoever runs
the service. An MFA phone stays pending until it is verified, so the user's `phone` is left as
it was. Members can text, not call: the inbox is SMS-only, so `can_call` is false.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.errors import Conflict, NotFound
from agent.phones import InvalidPhoneNumber, mask_phone, normalize_phone
from storage.models import Conversation, Membership, MembershipRole, User, Workspace
from storage.types import new_id, utcnow
from storage.users import find_member, members
from webhooks.avochato.accounts import AccountOut, UserOut, accounts_of, described, user_out
from webhooks.avochato.common import (
    PAGE_SIZE,
    Caller,
    Credentials,
    Paged,
    caller,
    epoch,
    inbox_route,
    ok,
    params,
)
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.openapi import Error
from webhooks.routing import Handler, Route

log = logging.getLogger("smsagent.avochato")

Role = Literal["member", "manager", "owner"]
KEPT_REQUESTS = 50
_EMAIL = r"^[^@\s]+@[^@\s]+$"


# What the routes take


class NewUser(Credentials):
    email: str = Field(max_length=254, pattern=_EMAIL, description="Email of the user to add")
    role: Role = Field(default="member", description="member (default), manager or owner")
    name: str | None = Field(
        default=None, max_length=100, description="Display name (only for a new user)"
    )
    phone: str | None = Field(
        default=None, max_length=32, description="E.164 phone: sets up a pending MFA phone"
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return _e164(value) if value else None


class Named(Credentials):
    # No length bound: it only looks a member up (an over-long one matches no one: 404), while
    # a bound would be answered 422 only up to the URL length the HTTP server accepts at all.
    email: str | None = Field(
        default=None, description="Email of the user: an alternative to the id in the path"
    )


class RoleChange(Named):
    role: Role = Field(description="member, manager or owner")


class MfaPhone(Named):
    phone: str = Field(min_length=1, max_length=32, description="E.164 phone to verify")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return _e164(value)


def _e164(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(f"not a phone number in E.164 format ({exc})") from exc


# What they answer


class MemberOut(UserOut):
    """A user with their place in this inbox."""

    role: str
    enabled: bool
    can_message: bool
    can_call: bool
    can_view_billing: bool
    can_view_org: bool
    added_at: float


class UserAccountOut(BaseModel):
    id: str
    subdomain: str | None
    name: str
    phone: str | None
    created_at: float


class OneUser(BaseModel):
    user: MemberOut


class UserAnswer(BaseModel):
    status: int
    data: OneUser


class UserList(BaseModel):
    users: list[UserOut]


class UsersAnswer(BaseModel):
    status: int
    data: UserList
    page: int


class Notice(BaseModel):
    message: str


class NoticeAnswer(BaseModel):
    status: int
    data: Notice


class NoticeAndUser(BaseModel):
    message: str
    user: MemberOut


class MfaAnswer(BaseModel):
    status: int
    data: NoticeAndUser


class UserAccounts(BaseModel):
    accounts: list[UserAccountOut]


class UserAccountsAnswer(BaseModel):
    status: int
    data: UserAccounts


def member_out(user: User, membership: Membership) -> MemberOut:
    owner = membership.role == MembershipRole.OWNER
    return MemberOut(
        **user_out(user).model_dump(),
        role=membership.role,
        enabled=membership.enabled,
        can_message=True,
        can_call=False,
        can_view_billing=owner,
        can_view_org=owner,
        added_at=epoch(membership.added_at) or 0.0,
    )


def user_account_out(account: AccountOut) -> UserAccountOut:
    return UserAccountOut(**account.model_dump(exclude={"tcr_campaign_id"}))


# The operations on the team


async def lock_team(*, session: AsyncSession, workspace_id: str) -> None:
    """Changes to one inbox's team, one at a time (PostgreSQL: the workspace row is locked until
    commit; SQLite has one writer anyway), so the last-owner rule holds under concurrency."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(
            select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
        )


async def member(*, session: AsyncSession, workspace_id: str, key: str) -> tuple[User, Membership]:
    found = await find_member(session=session, workspace_id=workspace_id, id_or_email=key)
    if found is None:
        raise NotFound(f"no user {key} in this inbox")
    return found


async def keep_an_owner(*, session: AsyncSession, leaving: Membership) -> None:
    """Refuse to take away the inbox's last enabled owner."""
    if leaving.role != MembershipRole.OWNER or not leaving.enabled:
        return
    others = await session.exec(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.workspace_id == leaving.workspace_id,
            Membership.user_id != leaving.user_id,
            Membership.role == MembershipRole.OWNER,
            col(Membership.enabled).is_(True),
        )
    )
    if not others.one():
        raise Conflict(
            "this is the inbox's last enabled owner: make another owner first", code="last_owner"
        )


async def add_member(
    *,
    session: AsyncSession,
    workspace_id: str,
    email: str,
    role: str,
    name: str | None,
    phone: str | None,
    by: str,
) -> tuple[User, Membership]:
    """Add the user with that email (made if new) to the inbox's team."""
    user = (await session.exec(select(User).where(func.lower(User.email) == email.lower()))).first()
    if user is None:
        user = User(id=new_id("usr"), email=email.lower(), name=name, require_2fa=True)
        session.add(user)
    elif await session.get(Membership, (workspace_id, user.id)) is not None:
        raise Conflict(f"{email} is already a member of this inbox", code="already_member")
    if user.home_workspace_id is None:
        user.home_workspace_id = workspace_id
    if phone:
        await note_request(
            session=session,
            user=user,
            kind="mfa_phone",
            workspace_id=workspace_id,
            by=by,
            phone=phone,
        )
    try:
        await session.flush()
        membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role)
        session.add(membership)
        await session.flush()
    except IntegrityError as exc:
        # Another request (for this inbox or another) made a user with this email just now.
        raise Conflict(f"another request is adding {email}: try again", code="conflict") from exc
    return user, membership


async def remove_member(*, session: AsyncSession, user: User, membership: Membership) -> int:
    """Take the user off the inbox's team; their tickets there lose their owner. Returns how
    many tickets were unassigned."""
    unassigned = await session.exec(
        update(Conversation)
        .where(
            col(Conversation.workspace_id) == membership.workspace_id,
            col(Conversation.assignee_user_id) == user.id,
        )
        .values(assignee_user_id=None)
    )
    await session.delete(membership)
    await session.flush()
    return int(unassigned.rowcount)


async def note_request(
    *, session: AsyncSession, user: User, kind: str, workspace_id: str, by: str, **details: Any
) -> None:
    """Note a request for the user (a password reset, an MFA phone) for the operator; the row is
    locked first (PostgreSQL) so two at once both stay."""
    if user not in session.new:
        await session.refresh(user, with_for_update=True)
    entry = {"kind": kind, "at": utcnow().isoformat(), "workspace_id": workspace_id, "by": by}
    user.requests = [*user.requests, {**entry, **details}][-KEPT_REQUESTS:]
    user.updated_at = utcnow()


# Who may


def may_manage(who: Caller, membership: Membership | None, *, role: str | None = None) -> None:
    """403 unless the caller may change this member (None: a new one) or give `role`."""
    mine = who.membership.role
    if mine not in (MembershipRole.MANAGER, MembershipRole.OWNER):
        raise HttpError(403, "forbidden", "managing the team takes a manager or an owner")
    if mine == MembershipRole.OWNER:
        return
    if membership is not None and membership.role == MembershipRole.OWNER:
        raise HttpError(403, "forbidden", "only an owner can change an owner")
    if role == MembershipRole.OWNER:
        raise HttpError(403, "forbidden", "only an owner can make an owner")


def _key(request: web.Request, query: Named) -> str:
    return query.email or request.match_info["id"]


@asynccontextmanager
async def _changing(
    request: web.Request, who: Caller, query: Named
) -> AsyncIterator[tuple[AsyncSession, User, Membership]]:
    """A transaction on the named member of the caller's inbox, the team locked."""
    async with request.app[DEPS].sessions() as session, session.begin():
        await lock_team(session=session, workspace_id=who.workspace.id)
        user, membership = await member(
            session=session, workspace_id=who.workspace.id, key=_key(request, query)
        )
        yield session, user, membership


def _log(event: str, who: Caller, user_id: str, **fields: object) -> None:
    """One line per change, with ids only (never an email, a name or a whole number)."""
    line = "avochato.%s workspace_id=%s user_id=%s by=%s" + "".join(f" {k}=%s" for k in fields)
    log.info(line, event, who.workspace.id, user_id, who.user.id, *fields.values())


# The handlers


@inbox_route
async def add_user(request: web.Request) -> web.Response:
    who = await caller(request)
    body = NewUser.model_validate(await params(request))
    may_manage(who, None, role=body.role)
    async with request.app[DEPS].sessions() as session, session.begin():
        await lock_team(session=session, workspace_id=who.workspace.id)
        user, membership = await add_member(
            session=session,
            workspace_id=who.workspace.id,
            email=body.email,
            role=body.role,
            name=body.name,
            phone=body.phone,
            by=who.user.id,
        )
        out = member_out(user, membership)
    _log("user_added", who, out.id, role=out.role, mfa_phone=body.phone and mask_phone(body.phone))
    return ok(OneUser(user=out).model_dump(mode="json"))


@inbox_route
async def list_users(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        team = await members(session=session, workspace_id=who.workspace.id)
    start = (query.page - 1) * PAGE_SIZE
    users = [user_out(user) for user, _ in team[start : start + PAGE_SIZE]]
    return ok(UserList(users=users).model_dump(mode="json"), page=query.page)


@inbox_route
async def get_user(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Named.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        user, membership = await member(
            session=session, workspace_id=who.workspace.id, key=_key(request, query)
        )
    return ok(OneUser(user=member_out(user, membership)).model_dump(mode="json"))


@inbox_route
async def user_accounts(request: web.Request) -> web.Response:
    """The inboxes the user may act in, among those the caller may act in."""
    who = await caller(request)
    query = Named.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        user, _ = await member(
            session=session, workspace_id=who.workspace.id, key=_key(request, query)
        )
        shared = await accounts_of(session=session, user_id=user.id, shared_with=who.user.id)
        accounts = await described(session=session, workspaces=shared)
    answer = UserAccounts(accounts=[user_account_out(a) for a in accounts])
    return ok(answer.model_dump(mode="json"))


@inbox_route
async def update_user(request: web.Request) -> web.Response:
    who = await caller(request)
    body = RoleChange.model_validate(await params(request))
    async with _changing(request, who, body) as (session, user, membership):
        may_manage(who, membership, role=body.role)
        if MembershipRole(body.role) != MembershipRole.OWNER:
            await keep_an_owner(session=session, leaving=membership)
        before, membership.role = membership.role, body.role
        out = member_out(user, membership)
    _log("user_role", who, out.id, before=before, after=out.role)
    return ok(OneUser(user=out).model_dump(mode="json"))


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    who = await caller(request)
    body = Named.model_validate(await params(request))
    async with _changing(request, who, body) as (session, user, membership):
        may_manage(who, membership)
        if not enabled:
            await keep_an_owner(session=session, leaving=membership)
        membership.enabled = enabled
        out = member_out(user, membership)
    _log("user_enabled" if enabled else "user_disabled", who, out.id)
    return ok(OneUser(user=out).model_dump(mode="json"))


@inbox_route
async def disable_user(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


@inbox_route
async def enable_user(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@inbox_route
async def delete_user(request: web.Request) -> web.Response:
    who = await caller(request)
    body = Named.model_validate(await params(request))
    async with _changing(request, who, body) as (session, user, membership):
        may_manage(who, membership)
        await keep_an_owner(session=session, leaving=membership)
        unassigned = await remove_member(session=session, user=user, membership=membership)
        user_id, email = user.id, user.email
    _log("user_removed", who, user_id, unassigned=unassigned)
    return ok(Notice(message=f"{email} has been removed from this account.").model_dump())


@inbox_route
async def password_reset(request: web.Request) -> web.Response:
    who = await caller(request)
    body = Named.model_validate(await params(request))
    async with _changing(request, who, body) as (session, user, membership):
        if user.id != who.user.id:
            may_manage(who, membership)
        await note_request(
            session=session,
            user=user,
            kind="password_reset",
            workspace_id=who.workspace.id,
            by=who.user.id,
        )
        user_id, email = user.id, user.email
    _log("password_reset_requested", who, user_id)
    return ok(Notice(message=f"Password reset email sent to {email}").model_dump())


@inbox_route
async def mfa_phone(request: web.Request) -> web.Response:
    who = await caller(request)
    body = MfaPhone.model_validate(await params(request))
    async with _changing(request, who, body) as (session, user, membership):
        if user.id != who.user.id and who.membership.role != MembershipRole.OWNER:
            raise HttpError(403, "forbidden", "setting another user's MFA phone takes an owner")
        await note_request(
            session=session,
            user=user,
            kind="mfa_phone",
            workspace_id=who.workspace.id,
            by=who.user.id,
            phone=body.phone,
        )
        out = member_out(user, membership)
    _log("mfa_phone_requested", who, out.id, phone=mask_phone(body.phone))
    answer = NoticeAndUser(
        message="MFA phone number has been set. User must verify via SMS code.", user=out
    )
    return ok(answer.model_dump(mode="json"))


def routes() -> list[Route]:
    """The users' routes; those that change someone also answer 403 when the caller's role
    does not allow it."""
    one = "/{id}"
    table: list[tuple[str, str, Handler, str, type[BaseModel], type[BaseModel]]] = [
        ("POST", "", add_user, "Add a User", NewUser, UserAnswer),
        ("GET", "", list_users, "List all Users", Paged, UsersAnswer),
        ("GET", one, get_user, "Get User Details", Named, UserAnswer),
        ("PUT", one, update_user, "Update a User role", RoleChange, UserAnswer),
        ("DELETE", one, delete_user, "Delete a User", Named, NoticeAnswer),
        (
            "GET",
            one + "/accounts",
            user_accounts,
            "List User Inboxes (those the caller shares with the user)",
            Named,
            UserAccountsAnswer,
        ),
        ("POST", one + "/disable", disable_user, "Disable a User", Named, UserAnswer),
        ("POST", one + "/enable", enable_user, "Re-enable a User", Named, UserAnswer),
        (
            "POST",
            one + "/mfa_phone",
            mfa_phone,
            "Set MFA Phone Number (recorded, pending verification)",
            MfaPhone,
            MfaAnswer,
        ),
        (
            "POST",
            one + "/password_reset",
            password_reset,
            "Trigger a Password Reset (recorded)",
            Named,
            NoticeAnswer,
        ),
    ]
    return [
        Route(
            method,
            "/compat/avochato/v1/users" + at,
            handler,
            f"Avochato's {summary}",
            "avochato",
            auth="avochato",
            query=model if method == "GET" else None,
            body=None if method == "GET" else model,
            responses={200: answer} if method == "GET" else {200: answer, 403: Error},
        )
        for method, at, handler, summary, model, answer in table
    ]
