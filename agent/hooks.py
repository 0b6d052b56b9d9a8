"""Signed webhooks to the business: what happened to its texts, customers and appointments.

Each event is queued as a `hook` job in the same transaction as the change it reports, so the
business hears of a change exactly when it is kept, even across a crash or a restart. A worker
lane of its own sends them (a slow endpoint never holds up a reply) and retries until the
endpoint answers 2xx; a 4xx other than 408/429 is final (the endpoint refused it). A workspace
without a `webhook_url` queues nothing: checking costs one indexed look-up of the workspace per
change at most, none where the change already reads the workspace (a reply's send, a turn), and
one per batch of inbound texts.

Verifying a request
-------------------
Every request is a POST of a JSON body with the header::

    Smsagent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

The MAC is HMAC-SHA256, keyed with the workspace's webhook secret, over the bytes of the
timestamp, a dot and the raw request body: ``f"{t}.".encode() + body``. The receiver recomputes
it over the body exactly as received (before parsing it), compares in constant time, refuses a
timestamp more than a few minutes from its clock (`verify` allows `TOLERANCE_SECONDS`), and
deduplicates on the event's ``id``: a retry after a lost answer sends the same id and body, with
a fresh signature. In Python::

    parts = dict(part.split("=", 1) for part in header.split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    good = hmac.compare_digest(mac.hexdigest(), parts["v1"]) and (
        abs(time.time() - int(parts["t"])) < 300
    )

Answer 2xx once the event is kept; anything else but a 4xx has it sent again.

Events arrive at least once and in no guaranteed order (a retried event may land after a later
one): order a message's events by ``created_at`` or by its status, which only moves forward.

Events and their bodies
-----------------------
Each body is ``{"id": "evt_…", "type": <type>, "created_at": "…Z", "workspace_id": "…",
"data": {…}}`` with ``data`` as follows (times are ISO-8601 UTC, phones E.164):

``message.sent``, ``message.delivered``, ``message.failed``
    An outbound text was taken by the provider, reached the handset, or did not (undelivered,
    failed, or not attempted: opted out, blocked). ``{"message_id", "conversation_id",
    "contact_id", "direction": "outbound", "status", "from", "to", "segments", "error_code",
    "provider", "provider_message_id", "sent_at", "delivered_at"}``; ``status`` is ``sent``,
    ``delivered``, or for a failure the stored one (``failed``, ``undelivered``, ``canceled``).
    A provider that reports delivery at once yields ``message.sent`` and ``message.delivered``.
``message.received``
    A customer's text: ``{"message_id", "conversation_id", "contact_id", "direction":
    "inbound", "from", "to", "body", "media_urls", "provider", "provider_message_id",
    "received_at"}``.
``conversation.handoff``
    The agent stopped answering; a person must take the thread: ``{"conversation_id",
    "contact_id", "reason"}``.
``appointment.confirmed``, ``appointment.canceled``
    ``{"appointment_id", "external_id", "status", "starts_at", "type", "contact_id",
    "conversation_id", "source"}`` (``source``: ``fast_path`` or ``agent``; a cancel adds
    ``reason``).
``appointment.reschedule_requested``
    For a workspace that keeps its own calendar (``scheduling = external``): the customer asked
    to move a visit; the business confirms it to them itself. ``{"appointment": {"id",
    "external_id", "type", "starts_at", "requested_start"}, "contact": {"id", "external_id",
    "first_name", "last_name", "phone"}, "conversation_id", "timezone"}``.
``contact.opted_out``
    The customer revoked consent; nothing but the confirmation of it is sent to them any more:
    ``{"contact_id", "phone", "conversation_id", "source"}`` (``source``: ``keyword``,
    ``natural_language`` or ``carrier``).

A text sent through the Avoca-compatible API reports its status in Avoca's documented shape
instead, signed the same way::

    {"event": "sms.delivered", "message_id": "msg_…", "timestamp": "…Z",
     "data": {"status": "delivered", "delivered_at": "…Z", "segments_sent": 1,
              "carrier": null, "device_type": null}}

(``sms.sent`` with ``sent_at``; ``sms.failed`` with ``failed_at`` and ``error_code``, and
``segments_sent`` 0 when the text never left.)

Retries
-------
After failed attempt n the next waits ``min(2 s × 2^(n-1), 1 h)`` (`retry_delay`; the first
step is ``SMSAGENT_WEBHOOK_RETRY_SECONDS``): 2 s, 4 s, … 34 min, then hourly. Attempt 12 goes
68 minutes after the first and attempts 13 to 35 hourly, so the 35th and last
(`HOOK_ATTEMPTS`) goes about 24 h 8 min after the first. A restart loses nothing: the job
waits in the database. Out of attempts, the job fails and the conversation's events say
``webhook.failed`` (``webhook.delivered`` is recorded only for requests the business must act
on, so status events do not crowd the thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent.deps import Deps
from agent.settings import Settings
from storage import events, jobs, messages, workspaces
from storage.inbound import InboundRow, Stored, store_inbound
from storage.jobs import Lease
from storage.models import Appointment, JobStatus, Message, MessageStatus, Workspace
from storage.raw import Dialect, Plan, commit_plan
from storage.types import new_id, utcnow

log = logging.getLogger("smsagent.hooks")

HOOK_JOB = "hook"
# A POST of a message's new status to the URL its sender gave (the inbox API's
# `status_callback`); run beside the hooks, on their retry schedule.
STATUS_CALLBACK_JOB = "status_callback"
SIGNATURE_HEADER = "Smsagent-Signature"
# How old a signed request may be when it arrives, for receivers using `verify`.
TOLERANCE_SECONDS = 300
# The retry schedule (see the module's docstring): about a day of attempts.
HOOK_ATTEMPTS = 35
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 3600.0
_FINAL = frozenset(range(400, 500)) - {408, 429}

MESSAGE_SENT = "message.sent"
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_FAILED = "message.failed"
MESSAGE_RECEIVED = "message.received"
CONVERSATION_HANDOFF = "conversation.handoff"
APPOINTMENT_CONFIRMED = "appointment.confirmed"
APPOINTMENT_CANCELED = "appointment.canceled"
RESCHEDULE_REQUESTED = "appointment.reschedule_requested"
CONTACT_OPTED_OUT = "contact.opted_out"
# Requests the business must act on: their delivery is recorded on the thread too.
_ACTIONABLE = frozenset({RESCHEDULE_REQUESTED})
# The API whose messages report their status in its own shape.
AVOCA = "avoca"
_FAILED = (MessageStatus.FAILED, MessageStatus.UNDELIVERED, MessageStatus.CANCELED)


class PrivateAddress(OSError):
    """A business-given URL leads to a loopback, private or otherwise non-public address, which
    the service will not call (see `SMSAGENT_CALLBACKS_ALLOW_PRIVATE`)."""


def private_address(exc: BaseException) -> bool:
    """Whether a client error came of refusing a non-public address: final, not retried."""
    return isinstance(exc, PrivateAddress) or (
        isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, PrivateAddress)
    )


def refuse_private_literal(url: str, settings: Settings) -> None:
    """A URL naming a non-public address outright (`http://127.0.0.1/…`), which no resolver
    sees, is refused here; names are checked by the guarded client's resolver."""
    if settings.callbacks_allow_private:
        return
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host.lower() in ("localhost", "localhost.localdomain"):
            raise PrivateAddress(f"{host} is not a public address") from None
        return
    if not address.is_global:
        raise PrivateAddress(f"{host} is not a public address")


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
    return signature_problem(secret, body, header, at=time.time(), tolerance=tolerance) is None


def signature_problem(
    secret: str, body: bytes, header: str | None, *, at: float, tolerance: int
) -> str | None:
    """Why `header` does not sign `body` with `secret` within `tolerance` seconds of `at` (unix
    seconds: now, or when a kept request arrived), or None when it does. Several `v1` values
    may be given, so a sender can sign with an old and a new secret at once."""
    if not header:
        return f"no {SIGNATURE_HEADER} header"
    stamp, macs = _parsed(header)
    if stamp is None or not macs:
        return (
            f"the {SIGNATURE_HEADER} header is malformed "
            "(expected t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256>)"
        )
    skew = at - stamp
    if skew > tolerance:
        return f"the {SIGNATURE_HEADER} timestamp is {int(skew)} s older than the request"
    if skew < -tolerance:
        return f"the {SIGNATURE_HEADER} timestamp is {int(-skew)} s ahead of the request"
    expected = sign(secret, body, stamp).partition("v1=")[2]
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        return f"the {SIGNATURE_HEADER} does not match the body (check the secret)"
    return None


_HEX = frozenset("0123456789abcdef")


def _parsed(header: str) -> tuple[int | None, list[str]]:
    stamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None, []
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                return None, []
            stamp = int(value)
        elif key == "v1":
            if len(value) != 64 or not set(value) <= _HEX:
                return None, []
            macs.append(value)
    return stamp, macs


def retry_delay(attempt: int, first: float = FIRST_RETRY_SECONDS) -> float:
    """Seconds to wait after failed attempt `attempt` (1 for the first)."""
    return min(first * 2.0 ** min(attempt - 1, 40), MAX_RETRY_SECONDS)


# --- Queueing, in the caller's transaction ------------------------------------------------------


def hook_plan(
    dialect: Dialect, workspace: Workspace, event_type: str, data: dict[str, Any]
) -> Plan[str | None]:
    """Queue `event_type` for the workspace's webhook; its id, or None when none is set."""
    if not workspace.webhook_url:
        return None
    return (yield from _queue(dialect, workspace.id, event_type, data))


def workspace_hook_plan(
    dialect: Dialect, workspace_id: str, event_type: str, data: dict[str, Any]
) -> Plan[str | None]:
    """`hook_plan` for a caller without the workspace's row: one indexed look-up first."""
    if not (yield from workspaces.hooked_plan([workspace_id])):
        return None
    return (yield from _queue(dialect, workspace_id, event_type, data))


def message_status_plan(dialect: Dialect, message_id: str) -> Plan[list[str]]:
    """Queue what an outbound message's status, just moved forward, tells the business, and
    the callback its sender asked for; the ids queued (none when there is neither: one
    indexed look-up)."""
    found = yield from messages.reported_plan(message_id)
    if found is None:
        return []
    message, contact_id, hooked = found
    queued = []
    if message.status_callback:
        callback_id = new_id("cb")
        yield from jobs.enqueue_plan(
            dialect,
            kind=STATUS_CALLBACK_JOB,
            key=f"callback:{callback_id}",
            payload={"id": callback_id, "message_id": message.id, "status": message.status},
            max_attempts=HOOK_ATTEMPTS,
        )
        queued.append(callback_id)
    if not hooked:
        return queued
    for event_type in _status_events(message):
        data = _message_data(message, contact_id, event_type)
        avoca = _avoca_body(message, event_type) if message.origin == AVOCA else None
        queued.append(
            (yield from _queue(dialect, message.workspace_id, event_type, data, body=avoca))
        )
    return queued


def store_inbound_reported(dialect: Dialect, batch: Sequence[InboundRow]) -> Plan[list[Stored]]:
    """`store_inbound`, plus `message.received` for each new text of a workspace with a
    webhook: one look-up of the batch's workspaces and one insert of all their events, nothing
    per text when none of them has a webhook."""
    stored = yield from store_inbound(dialect, batch)
    fresh = [
        (row, result) for row, result in zip(batch, stored, strict=True) if not result.duplicate
    ]
    if not fresh:
        return stored
    hooked = yield from workspaces.hooked_plan({row.workspace_id for row, _ in fresh})
    if not hooked:
        return stored
    received = _stamp(utcnow())
    entries = []
    for row, result in fresh:
        if row.workspace_id not in hooked:
            continue
        data = {
            "message_id": result.message_id,
            "conversation_id": result.conversation_id,
            "contact_id": result.contact_id,
            "direction": "inbound",
            "from": row.from_number,
            "to": row.to_number,
            "body": row.body,
            "media_urls": list(row.media_urls),
            "provider": row.provider,
            "provider_message_id": row.provider_message_id,
            "received_at": received,
        }
        payload = _payload(row.workspace_id, MESSAGE_RECEIVED, data)
        entries.append((_key(payload), payload))
    yield from jobs.enqueue_many_plan(
        dialect, kind=HOOK_JOB, entries=entries, max_attempts=HOOK_ATTEMPTS
    )
    return stored


def appointment_data(
    appointment: Appointment, *, status: str, conversation_id: str, source: str, **extra: Any
) -> dict[str, Any]:
    """An appointment event's `data`."""
    return {
        "appointment_id": appointment.id,
        "external_id": appointment.external_id,
        "status": status,
        "starts_at": _stamp(appointment.starts_at),
        "type": appointment.type,
        "contact_id": appointment.contact_id,
        "conversation_id": conversation_id,
        "source": source,
        **extra,
    }


def _queue(
    dialect: Dialect,
    workspace_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
) -> Plan[str]:
    payload = _payload(workspace_id, event_type, data, body)
    yield from jobs.enqueue_plan(
        dialect, kind=HOOK_JOB, key=_key(payload), payload=payload, max_attempts=HOOK_ATTEMPTS
    )
    return str(payload["id"])


def _payload(
    workspace_id: str,
    event_type: str,
    data: dict[str, Any],
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job's payload: the body to send, and what the worker needs beside it."""
    hook_id = new_id("evt")
    conversation_id = data.get("conversation_id")
    return {
        "id": hook_id,
        "type": event_type,
        "workspace_id": workspace_id,
        "conversation_id": conversation_id,
        "body": body
        or {
            "id": hook_id,
            "type": event_type,
            "created_at": _stamp(utcnow()),
            "workspace_id": workspace_id,
            "data": data,
        },
    }


def _key(payload: dict[str, Any]) -> str:
    return f"hook:{payload['id']}"


def _status_events(message: Message) -> list[str]:
    if message.status == MessageStatus.SENT:
        return [MESSAGE_SENT]
    if message.status == MessageStatus.DELIVERED:
        # Straight to delivered (a provider that says so at once, or a report that beat the
        # send's own answer): it was sent too.
        return [MESSAGE_DELIVERED] if message.sent_at else [MESSAGE_SENT, MESSAGE_DELIVERED]
    if message.status in _FAILED:
        return [MESSAGE_FAILED]
    return []


def _message_data(message: Message, contact_id: str, event_type: str) -> dict[str, Any]:
    status = {MESSAGE_SENT: "sent", MESSAGE_DELIVERED: "delivered"}.get(event_type, message.status)
    return {
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "contact_id": contact_id,
        "direction": "outbound",
        "status": status,
        "from": message.from_number,
        "to": message.to_number,
        "segments": message.segments,
        "error_code": message.error_code,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "sent_at": _stamp(message.sent_at),
        "delivered_at": _stamp(message.delivered_at),
    }


def _avoca_body(message: Message, event_type: str) -> dict[str, Any]:
    """Avoca's documented status webhook for a message sent through its API."""
    kind = event_type.removeprefix("message.")
    at = {"sent": message.sent_at, "delivered": message.delivered_at}.get(kind)
    stamp = _stamp(at or message.updated_at)
    reached = message.sent_at is not None or message.status in (
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
    )
    data: dict[str, Any] = {
        "status": kind,
        f"{kind}_at": stamp,
        "segments_sent": message.segments if reached else 0,
        "carrier": None,
        "device_type": None,
    }
    if kind == "failed":
        data["error_code"] = message.error_code
    return {"event": f"sms.{kind}", "message_id": message.id, "timestamp": stamp, "data": data}


def _stamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Sending ----------------------------------------------------------------------------------


async def retry_later(deps: Deps, job: Lease, error: str) -> float:
    """Put a refused request back in the queue for its next try, on the backoff every webhook
    and callback shares; the seconds until then."""
    delay = retry_delay(job.attempts, deps.settings.webhook_retry_seconds)
    await commit_plan(
        deps.engine,
        jobs.settle_plan(
            Dialect(deps.engine.dialect.name),
            job,
            status=JobStatus.QUEUED,
            error=error,
            run_at=utcnow() + timedelta(seconds=delay),
        ),
    )
    deps.nudge(job.kind, due_at=asyncio.get_running_loop().time() + delay)
    return delay


class HookHandler:
    """Runs `hook` jobs: one signed POST to the workspace's webhook URL, retried on the
    schedule above."""

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
        try:
            status = await self._post(workspace.webhook_url, workspace.webhook_secret, job)
        except HookRefused as exc:
            if exc.__cause__ is not None and private_address(exc.__cause__):
                log.warning("hook.refused id=%s reason=private_address", job.payload.get("id"))
                await self._settle(job, JobStatus.FAILED, "the webhook URL is not a public address")
                return
            await self._again(job, str(exc))
            return
        if status in _FINAL:
            log.warning("hook.refused id=%s status=%d", job.payload.get("id"), status)
            await self._settle(job, JobStatus.FAILED, f"the endpoint answered {status}")
            return
        log.info(
            "hook.delivered id=%s type=%s attempt=%d",
            job.payload.get("id"),
            job.payload.get("type"),
            job.attempts,
        )
        await self._settle(job, JobStatus.DONE, None)

    async def exhausted(self, job: Lease, error: str) -> None:
        log.error("hook.gave_up id=%s error=%s", job.payload.get("id"), error)
        await self._settle(job, JobStatus.FAILED, error)

    async def _post(self, url: str, secret: str, job: Lease) -> int:
        """The endpoint's answer to one signed POST; HookRefused when it must be tried again."""
        # Jobs queued before the payload carried its body are the body themselves.
        body = json.dumps(job.payload.get("body", job.payload), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            "User-Agent": "smsagent-webhooks",
        }
        try:
            refuse_private_literal(url, self._deps.settings)
            async with self._http.post(url, data=body, headers=headers) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, PrivateAddress) as exc:
            raise HookRefused(f"{type(exc).__name__} from the webhook endpoint") from exc
        if status not in _FINAL and not 200 <= status < 300:
            raise HookRefused(f"the endpoint answered {status}")
        return status

    async def _again(self, job: Lease, error: str) -> None:
        if job.attempts >= job.max_attempts:
            await self.exhausted(job, error)
            return
        delay = await retry_later(self._deps, job, error)
        log.warning(
            "hook.retry id=%s attempt=%d delay_s=%.1f error=%s",
            job.payload.get("id"),
            job.attempts,
            delay,
            error,
        )

    async def _settle(self, job: Lease, status: JobStatus, error: str | None) -> None:
        """Finish the job and, when it is about a conversation, say so in its events: a request
        the office never got must show where people look."""
        await commit_plan(self._deps.engine, self._settled(job, status, error))

    def _settled(self, job: Lease, status: JobStatus, error: str | None) -> Plan[None]:
        if not (yield from jobs.settle_plan(self._dialect, job, status=status, error=error)):
            return
        event_type = job.payload.get("type")
        if status == JobStatus.DONE and event_type not in _ACTIONABLE:
            return
        conversation_id = job.payload.get("conversation_id")
        data = job.payload.get("data")
        if conversation_id is None and isinstance(data, dict):
            conversation_id = data.get("conversation_id")
        if not conversation_id:
            return
        yield from events.event_plan(
            self._dialect,
            workspace_id=str(job.payload.get("workspace_id")),
            conversation_id=str(conversation_id),
            type="webhook.delivered" if status == JobStatus.DONE else "webhook.failed",
            data={
                "webhook_id": job.payload.get("id"),
                "type": event_type,
                "attempts": job.attempts,
                **({"error": error[:300]} if error else {}),
            },
        )
