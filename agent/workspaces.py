"""Workspaces (one per business): creating them with their credentials, and finding the one a
text or a request belongs to.

Credentials are made here and shown once: the API key, the Avaamo channel uuid and the Avochato
secret are kept only as SHA-256 hashes (the Avochato auth id is an identifier, kept as is).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.errors import Conflict
from storage.engine import SessionFactory
from storage.models import Membership, MembershipRole, User, Workspace
from storage.templates import install_builtin_templates
from storage.types import new_id, utcnow
from storage.workspaces import NumberTaken, claim_sender_number, workspace_for_number


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    id: str
    api_key: str
    avaamo_channel_uuid: str
    avochato_auth_id: str
    avochato_auth_secret: str


def new_api_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


async def create_workspace(
    sessions: SessionFactory,
    *,
    name: str,
    vertical: str,
    timezone: str,
    numbers: list[str],
    provider: str,
    business_name: str | None = None,
) -> Credentials:
    """A new workspace with its sender numbers, the built-in templates and fresh credentials."""
    credentials = Credentials(
        id=new_id("ws"),
        api_key=new_api_key(),
        avaamo_channel_uuid=str(uuid.uuid4()),
        avochato_auth_id=secrets.token_hex(10),
        avochato_auth_secret=secrets.token_urlsafe(24),
    )
    async with sessions() as session, session.begin():
        session.add(
            Workspace(
                id=credentials.id,
                name=name,
                business_name=business_name or name,
                timezone=timezone,
                vertical=vertical,
                api_key_hash=hash_secret(credentials.api_key),
                avaamo_channel_hash=hash_secret(credentials.avaamo_channel_uuid),
                subdomain=await _free_subdomain(session, name),
            )
        )
        await session.flush()
        # The inbox credentials are its owner's: a team member of the workspace.
        owner = User(
            id=new_id("usr"),
            email=f"owner+{credentials.id}@smsagent.invalid",
            name=f"{name} owner"[:100],
            auth_id=credentials.avochato_auth_id,
            auth_secret_hash=hash_secret(credentials.avochato_auth_secret),
            home_workspace_id=credentials.id,
            require_2fa=False,
        )
        session.add(owner)
        await session.flush()
        session.add(
            Membership(workspace_id=credentials.id, user_id=owner.id, role=MembershipRole.OWNER)
        )
        await session.flush()
        for number in numbers:
            try:
                await claim_sender_number(
                    session=session, workspace_id=credentials.id, number=number, provider=provider
                )
            except NumberTaken as exc:
                raise Conflict(
                    f"{exc.number} already sends for another workspace", code="number_taken"
                ) from exc
        await install_builtin_templates(session=session, workspace_id=credentials.id)
    return credentials


async def _free_subdomain(session: AsyncSession, name: str) -> str:
    """A subdomain from the name ("Bright Smiles" → "bright-smiles"), numbered if taken."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "inbox"
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        taken = await session.exec(select(Workspace.id).where(Workspace.subdomain == candidate))
        if taken.first() is None:
            return candidate
    return f"{base}-{secrets.token_hex(4)}"


async def rotate_api_key(sessions: SessionFactory, workspace_id: str) -> str | None:
    """A new API key for the workspace (the old one stops working at once); None: no such
    workspace."""
    key = new_api_key()
    async with sessions() as session, session.begin():
        workspace = await session.get(Workspace, workspace_id)
        if workspace is None:
            return None
        workspace.api_key_hash = hash_secret(key)
        workspace.updated_at = utcnow()
    return key


async def set_webhook(sessions: SessionFactory, workspace_id: str, url: str | None) -> str | None:
    """Point the workspace's status webhooks at `url` (None: stop them) with a new signing
    secret, which is returned to be shown once (it is kept as is: it signs every request).
    Raises LookupError for no such workspace."""
    return await _point(sessions, workspace_id, url, kind="webhook", prefix="whsec_")


async def set_gateway(sessions: SessionFactory, workspace_id: str, url: str | None) -> str | None:
    """Send the workspace's texts through the signed gateway at `url` (None: stop) with a new
    secret, which signs both directions and is returned to be shown once (it is kept as is).
    Raises LookupError for no such workspace."""
    return await _point(sessions, workspace_id, url, kind="gateway", prefix="gwsec_")


async def _point(
    sessions: SessionFactory, workspace_id: str, url: str | None, *, kind: str, prefix: str
) -> str | None:
    """Set the workspace's `<kind>_url` and a fresh `<kind>_secret` (both None for no URL)."""
    secret = None if url is None else prefix + secrets.token_urlsafe(32)
    async with sessions() as session, session.begin():
        workspace = await session.get(Workspace, workspace_id)
        if workspace is None:
            raise LookupError(workspace_id)
        setattr(workspace, f"{kind}_url", url)
        setattr(workspace, f"{kind}_secret", secret)
        workspace.updated_at = utcnow()
    return secret


class NumberBook:
    """Which workspace a number of ours belongs to, for routing inbound texts.

    Read through to the database and kept for a while: numbers change hands rarely, and the
    ingest path must not pay a query per text. A number no workspace has goes to `fallback`.
    """

    def __init__(self, sessions: SessionFactory, fallback: str, *, keep_seconds: float = 60.0):
        self._sessions = sessions
        self._fallback = fallback
        self._keep = keep_seconds
        self._known: dict[str, tuple[str | None, float]] = {}

    async def workspace_for(self, number: str) -> str:
        now = time.monotonic()
        hit = self._known.get(number)
        if hit is None or hit[1] < now:
            async with self._sessions() as session:
                owner = await workspace_for_number(session=session, number=number)
            if len(self._known) > 10_000:
                self._known.clear()
            # An unknown number is looked up again sooner: it may be added any moment.
            self._known[number] = (owner, now + (self._keep if owner else min(self._keep, 5.0)))
            hit = self._known[number]
        return hit[0] or self._fallback

    def forget(self, number: str) -> None:
        self._known.pop(number, None)
