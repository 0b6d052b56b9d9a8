"""`Idempotency-Key` on the API's POSTs: a retry gets the first answer, not a second effect.

Same key and same request: the first answer again, byte for byte, with `Idempotent-Replayed:
true`. Same key, another request: 422. The first still running: 409 with `Retry-After`. Keys
belong to the workspace of the API key and are kept 24 hours (`storage.idempotency`). A request
refused as invalid, or failing, keeps nothing: it may be sent again under the same key.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from storage.idempotency import Claimed, claim_plan, finish_plan, release_plan
from storage.raw import Dialect, Plan, commit_plan
from webhooks.api import authenticate
from webhooks.errors import HttpError
from webhooks.keys import DEPS, KEEP_ANSWER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEADER = "Idempotency-Key"


def idempotent(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def run_once(request: web.Request) -> web.StreamResponse:
        key = request.headers.get(HEADER)
        if key is None:
            return await handler(request)
        key = key.strip()
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise HttpError(
                400, "invalid_idempotency_key", f"{HEADER} must be 1 to 255 printable characters"
            )
        workspace_id = await authenticate(request)
        body = await request.read()
        fingerprint = hashlib.sha256(
            f"{request.method} {request.path}\n".encode() + body
        ).hexdigest()
        engine = request.app[DEPS].engine
        dialect = Dialect(engine.dialect.name)
        claim = await commit_plan(
            engine, claim_plan(dialect, workspace_id, key, fingerprint), urgent=True
        )
        if claim.outcome == Claimed.MISMATCH:
            raise HttpError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was already used for a different request",
            )
        if claim.outcome == Claimed.BUSY:
            raise HttpError(
                409,
                "idempotency_key_in_use",
                f"a request with this {HEADER} is still being processed; retry shortly",
                headers={"Retry-After": "1"},
            )
        if claim.outcome == Claimed.REPLAY:
            assert claim.status is not None
            return web.Response(
                status=claim.status,
                text=claim.body,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        kept: list[bool] = []

        def keep(d: Dialect, status: int, text: str) -> Plan[None]:
            kept.append(True)
            return finish_plan(d, workspace_id, key, status, text)

        # A handler that writes in one transaction keeps its answer in it (see KEEP_ANSWER).
        request[KEEP_ANSWER] = keep
        try:
            response = await handler(request)
        except BaseException:
            if not kept:
                await commit_plan(engine, release_plan(dialect, workspace_id, key), urgent=True)
            raise
        if kept:
            return response
        if isinstance(response, web.Response) and response.status < 500 and response.text:
            done = finish_plan(dialect, workspace_id, key, response.status, response.text)
            await commit_plan(engine, done, urgent=True)
        else:
            await commit_plan(engine, release_plan(dialect, workspace_id, key), urgent=True)
        return response

    return run_once
