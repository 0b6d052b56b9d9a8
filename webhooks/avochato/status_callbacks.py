"""The `status_callback` a message's sender may give: each time the message's delivery status
moves, the message (as the inbox API shows it, with that status) is POSTed to the URL.

The status change queues a durable job in its own transaction (`agent.hooks`); it runs in the
webhooks' lane, on their retry schedule: a network error, a 5xx, 408 or 429 is tried again, any
other 4xx is final. When the workspace has a webhook secret the POST is signed as the webhooks
are (`Smsagent-Signature`).
"""

from __future__ import annotations

import json
import logging

import aiohttp

from agent import hooks
from agent.deps import Deps
from storage import inbox_messages, jobs
from storage.jobs import Lease
from storage.models import JobStatus
from storage.raw import Dialect, commit_plan
from webhooks.avochato.message_shapes import dump, sms_message_out

log = logging.getLogger("smsagent.avochato")

STATUS_CALLBACK_JOB = hooks.STATUS_CALLBACK_JOB
_FINAL = frozenset(range(400, 500)) - {408, 429}


class StatusCallbacks:
    """Runs `status_callback` jobs: one POST of the message, as the inbox shows it with its new
    status, to the URL its sender gave; retried on the webhooks' schedule (`agent.hooks`).
    Signed as the webhooks are when the workspace has a webhook secret."""

    def __init__(self, deps: Deps, http: aiohttp.ClientSession) -> None:
        self._deps = deps
        self._http = http
        self._dialect = Dialect(deps.engine.dialect.name)

    async def run(self, job: Lease) -> None:
        async with self._deps.reads() as session:
            target = await inbox_messages.callback_target(
                session=session, message_id=str(job.payload.get("message_id"))
            )
        if target is None or not target.message.status_callback:
            await self._settle(job, JobStatus.FAILED, "the message or its callback is gone")
            return
        shown = sms_message_out(
            target.message, target.contact_id, status=str(job.payload.get("status") or "")
        )
        body = json.dumps(dump(shown), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "smsagent-callbacks"}
        if target.secret:
            headers[hooks.SIGNATURE_HEADER] = hooks.sign(target.secret, body)
        try:
            hooks.refuse_private_literal(target.message.status_callback, self._deps.settings)
            async with self._http.post(
                target.message.status_callback, data=body, headers=headers
            ) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, ValueError, hooks.PrivateAddress) as exc:
            if hooks.private_address(exc):
                log.warning(
                    "callback.refused message_id=%s reason=private_address", target.message.id
                )
                await self._settle(
                    job, JobStatus.FAILED, "the callback URL is not a public address"
                )
                return
            await self._again(job, f"{type(exc).__name__} from the callback URL")
            return
        if status in _FINAL:
            log.warning("callback.refused message_id=%s status=%d", target.message.id, status)
            await self._settle(job, JobStatus.FAILED, f"the callback URL answered {status}")
        elif not 200 <= status < 300:
            await self._again(job, f"the callback URL answered {status}")
        else:
            log.info(
                "callback.delivered message_id=%s status=%s attempt=%d",
                target.message.id,
                shown.status,
                job.attempts,
            )
            await self._settle(job, JobStatus.DONE, None)

    async def exhausted(self, job: Lease, error: str) -> None:
        log.error("callback.gave_up message_id=%s error=%s", job.payload.get("message_id"), error)
        await self._settle(job, JobStatus.FAILED, error)

    async def _again(self, job: Lease, error: str) -> None:
        if job.attempts >= job.max_attempts:
            await self.exhausted(job, error)
            return
        delay = await hooks.retry_later(self._deps, job, error)
        log.warning(
            "callback.retry message_id=%s attempt=%d delay_s=%.1f error=%s",
            job.payload.get("message_id"),
            job.attempts,
            delay,
            error,
        )

    async def _settle(self, job: Lease, status: JobStatus, error: str | None) -> None:
        await commit_plan(
            self._deps.engine, jobs.settle_plan(self._dialect, job, status=status, error=error)
        )
