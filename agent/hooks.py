"""Signed webhooks to the business's own systems, for what needs them to act.

Today that is `appointment.reschedule_requested`: a workspace that keeps its calendar elsewhere
(`scheduling = external`) is asked to move a visit, and confirms it to the customer itself.

The request is queued as a job in the same transaction as the change it reports, so it is sent
exactly when the change is kept, and retried with backoff until the endpoint answers 2xx (a 4xx
other than 408/429 is final: the endpoint refused it). Each request is JSON::

    {"id": "evt_…", "type": "appointment.reschedule_requested", "created_at": "…Z",
     "workspace_id": "…", "data": {…}}

signed the way Stripe signs its webhooks, in a header ``Smsagent-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the workspace's webhook secret>``. The receiver
recomputes it (`verify`), refuses a timestamp older than its tolerance, and deduplicates on
``id`` (a retry after a lost answer sends the same id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import aiohttp

from agent.deps import Deps
from storage import events, jobs
from storage.jobs import Lease
from storage.models import JobStatus, Workspace
from storage.raw import Dialect, Plan, commit_plan
from storage.types import new_id, utcnow

log = logging.getLogger("smsagent.hooks")

HOOK_JOB = "hook"
SIGNATURE_HEADER = "Smsagent-Signature"
# How old a signed request may be when it arrives, for receivers using `verify`.
TOLERANCE_SECONDS = 300
_FINAL = frozenset(range(400, 500)) - {408, 429}


class HookRefused(Exception):
    """The endpoint did not take the request; the job is tried again later."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Smsagent-Signature`` header value for `body`."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def verify(
    secret: str, body: bytes, header: str | None, *, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """Whether `header` signs `body` with `secret`, within `tolerance` seconds of now."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def hook_plan(
    dialect: Dialect, workspace: Workspace, event_type: str, data: dict[str, Any]
) -> Plan[str | None]:
    """Queue `event_type` for the workspace's webhook; its id, or None when none is set."""
    if not workspace.webhook_url:
        return None
    hook_id = new_id("evt")
    body = {
        "id": hook_id,
        "type": event_type,
        "created_at": utcnow().isoformat().replace("+00:00", "Z"),
        "workspace_id": workspace.id,
        "data": data,
    }
    yield from jobs.enqueue_plan(
        dialect, kind=HOOK_JOB, key=f"hook:{hook_id}", payload=body, max_attempts=10
    )
    return hook_id


class HookHandler:
    """Runs `hook` jobs: one signed POST to the workspace's webhook URL."""

    def __init__(self, deps: Deps, http: aiohttp.ClientSession) -> None:
        self._deps = deps
        self._http = http
        self._dialect = Dialect(deps.engine.dialect.name)

    async def run(self, job: Lease) -> None:
        async with self._deps.reads() as session:
            workspace = await session.get(Workspace, str(job.payload.get("workspace_id")))
        if workspace is None or not workspace.webhook_url or not workspace.webhook_secret:
            await self._settle(job, JobStatus.FAILED, "the workspace has no webhook any more")
            return
        body = json.dumps(job.payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(workspace.webhook_secret, body),
            "User-Agent": "smsagent-webhooks",
        }
        try:
            async with self._http.post(workspace.webhook_url, data=body, headers=headers) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HookRefused(f"{type(exc).__name__} from the webhook endpoint") from exc
        if status in _FINAL:
            log.warning("hook.refused id=%s status=%d", job.payload.get("id"), status)
            await self._settle(job, JobStatus.FAILED, f"the endpoint answered {status}")
            return
        if not 200 <= status < 300:
            raise HookRefused(f"the endpoint answered {status}")
        log.info("hook.delivered id=%s type=%s", job.payload.get("id"), job.payload.get("type"))
        await self._settle(job, JobStatus.DONE, None)

    async def exhausted(self, job: Lease, error: str) -> None:
        log.error("hook.gave_up id=%s error=%s", job.payload.get("id"), error)
        await self._settle(job, JobStatus.FAILED, error)

    async def _settle(self, job: Lease, status: JobStatus, error: str | None) -> None:
        """Finish the job and, when it is about a conversation, say so in its events: a request
        the office never got must show where people look."""
        await commit_plan(self._deps.engine, self._settled(job, status, error))

    def _settled(self, job: Lease, status: JobStatus, error: str | None) -> Plan[None]:
        if not (yield from jobs.settle_plan(self._dialect, job, status=status, error=error)):
            return
        data = job.payload.get("data")
        conversation_id = data.get("conversation_id") if isinstance(data, dict) else None
        if not conversation_id:
            return
        yield from events.event_plan(
            self._dialect,
            workspace_id=str(job.payload.get("workspace_id")),
            conversation_id=str(conversation_id),
            type="webhook.delivered" if status == JobStatus.DONE else "webhook.failed",
            data={
                "webhook_id": job.payload.get("id"),
                "type": job.payload.get("type"),
                "attempts": job.attempts,
                **({"error": error[:300]} if error else {}),
            },
        )
