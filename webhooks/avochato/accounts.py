"""Accounts (`/v1/accounts`, `/v1/accounts/:ids`) and `/v1/whoami`: the inboxes a team member
may act in, and who the credentials are.

An account is a workspace. The accounts a member sees are those where their membership is
enabled (a disabled membership is no access); fetching by subdomains answers the ones of those
named, so an inbox the caller does not belong to is left out, exactly as one that does not
exist. An account's `phone` is its default sender number (the oldest); Avochato's 10DLC
campaign id is not kept here and is always null.

whoami answers the inbox the request acts in (its home, or the one `subdomain` names), the
user in the shape every user route starts from (`user_out`), and when the credentials were
issued (with their user), in the inbox's time zone as Avochato writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.phones import DEFAULT_REGION
from storage.models import Membership, SenderNumber, User, Workspace
from webhooks.avochato.common import (
    PAGE_SIZE,
    Credentials,
    Paged,
    caller,
    epoch,
    id_list,
    inbox_route,
    ok,
    params,
)
from webhooks.keys import DEPS
from webhooks.routing import Route


class AccountOut(BaseModel):
    id: str
    subdomain: str | None
    name: str
    phone: str | None
    created_at: float
    tcr_campaign_id: str | None


class UserOut(BaseModel):
    """A team member as Avochato shows one (`image_url`, `avobot_id`: not kept here; MFA is
    never verified here, so `mfa_app_valid` and `phone_valid` are false)."""

    email: str | None
    id: str
    name: str | None
    image_url: str | None
    signed_in_at: float | None
    avobot_id: str | None
    phone: str | None
    phone_formatted: str | None
    created_at: float
    require_2fa: bool
    mfa_app_valid: bool
    phone_valid: bool


class AccountList(BaseModel):
    accounts: list[AccountOut]


class AccountsAnswer(BaseModel):
    status: int
    data: AccountList
    page: int


class Whoami(BaseModel):
    account: AccountOut
    user: UserOut
    origin: str
    # When the credentials were issued, in the inbox's time zone (ISO 8601 with its offset).
    created_at: str


class WhoamiAnswer(BaseModel):
    status: int
    data: Whoami


async def accounts_of(
    *,
    session: AsyncSession,
    user_id: str,
    shared_with: str | None = None,
    subdomains: Sequence[str] | None = None,
    page: int | None = None,
) -> list[Workspace]:
    """The workspaces where the user's membership is enabled, oldest first; only those where
    `shared_with` (another user) is enabled too, only those named by `subdomains`, one page."""
    mine = aliased(Membership)
    query = (
        select(Workspace)
        .join(mine, col(mine.workspace_id) == col(Workspace.id))
        .where(col(mine.user_id) == user_id, col(mine.enabled).is_(True))
    )
    if shared_with is not None:
        theirs = aliased(Membership)
        query = query.join(theirs, col(theirs.workspace_id) == col(Workspace.id)).where(
            col(theirs.user_id) == shared_with, col(theirs.enabled).is_(True)
        )
    if subdomains is not None:
        query = query.where(col(Workspace.subdomain).in_(list(subdomains)))
    query = query.order_by(col(Workspace.created_at), col(Workspace.id))
    if page is not None:
        query = query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    return list((await session.exec(query)).all())


async def default_numbers(*, session: AsyncSession, workspace_ids: Sequence[str]) -> dict[str, str]:
    """Each workspace's default sender: its oldest number."""
    if not workspace_ids:
        return {}
    found = await session.exec(
        select(SenderNumber)
        .where(col(SenderNumber.workspace_id).in_(list(workspace_ids)))
        .order_by(col(SenderNumber.created_at), col(SenderNumber.number))
    )
    first: dict[str, str] = {}
    for number in found:
        first.setdefault(number.workspace_id, number.number)
    return first


def account_out(workspace: Workspace, phone: str | None) -> AccountOut:
    return AccountOut(
        id=workspace.id,
        subdomain=workspace.subdomain,
        name=workspace.name,
        phone=phone,
        created_at=epoch(workspace.created_at) or 0.0,
        tcr_campaign_id=None,
    )


async def described(*, session: AsyncSession, workspaces: Sequence[Workspace]) -> list[AccountOut]:
    phones = await default_numbers(session=session, workspace_ids=[w.id for w in workspaces])
    return [account_out(w, phones.get(w.id)) for w in workspaces]


def user_out(user: User) -> UserOut:
    return UserOut(
        email=user.email,
        id=user.id,
        name=user.name,
        image_url=None,
        signed_in_at=epoch(user.signed_in_at),
        avobot_id=None,
        phone=user.phone,
        phone_formatted=formatted(user.phone),
        created_at=epoch(user.created_at) or 0.0,
        require_2fa=user.require_2fa,
        mfa_app_valid=False,
        phone_valid=False,
    )


def formatted(phone: str | None) -> str | None:
    """`+14155551234` → `(415) 555-1234`; numbers abroad in their international form."""
    if not phone:
        return None
    try:
        parsed = phonenumbers.parse(phone, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return phone
    home = phonenumbers.region_code_for_number(parsed) == DEFAULT_REGION
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if home
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return str(phonenumbers.format_number(parsed, style))


def local_time(moment: datetime, timezone: str) -> str:
    """`2026-03-31T10:56:37.252-07:00`: milliseconds, in the zone (UTC if it is unknown)."""
    try:
        zone: ZoneInfo | None = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone or UTC).isoformat(timespec="milliseconds")


@inbox_route
async def list_accounts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        found = await accounts_of(session=session, user_id=who.user.id, page=query.page)
        accounts = await described(session=session, workspaces=found)
    return ok(AccountList(accounts=accounts).model_dump(mode="json"), page=query.page)


@inbox_route
async def fetch_accounts(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    subdomains = id_list(request.match_info["ids"])
    async with request.app[DEPS].reads() as session:
        found = await accounts_of(
            session=session, user_id=who.user.id, subdomains=subdomains, page=query.page
        )
        accounts = await described(session=session, workspaces=found)
    return ok(AccountList(accounts=accounts).model_dump(mode="json"), page=query.page)


@inbox_route
async def whoami(request: web.Request) -> web.Response:
    who = await caller(request)
    async with request.app[DEPS].reads() as session:
        [account] = await described(session=session, workspaces=[who.workspace])
    answer = Whoami(
        account=account,
        user=user_out(who.user),
        origin="api",
        # Credentials are issued with the user they belong to.
        created_at=local_time(who.user.created_at, who.workspace.timezone),
    )
    return ok(answer.model_dump(mode="json"))


def routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/compat/avochato/v1/accounts",
            list_accounts,
            "Avochato's List Accounts: the inboxes these credentials may act in",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: AccountsAnswer},
        ),
        Route(
            "GET",
            "/compat/avochato/v1/accounts/{ids}",
            fetch_accounts,
            "Avochato's Fetch Accounts: inboxes by their comma-separated subdomains",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: AccountsAnswer},
        ),
        Route(
            "GET",
            "/compat/avochato/v1/whoami",
            whoami,
            "Avochato's whoami: the inbox and the team member these credentials act as",
            "avochato",
            auth="avochato",
            query=Credentials,
            responses={200: WhoamiAnswer},
        ),
    ]
