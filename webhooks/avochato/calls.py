"""`POST /v1/calls`: smsagent is SMS-only, so a call token is refused, clearly."""

from __future__ import annotations

from aiohttp import web

from webhooks.avochato.common import Credentials, caller, failure, inbox_route
from webhooks.routing import Route


@inbox_route
async def create_call(request: web.Request) -> web.Response:
    who = await caller(request)
    return failure(
        403,
        "calls_not_supported",
        "this inbox is SMS-only: there are no calls to place",
        {"account_hash_id": who.workspace.id},
    )


def routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/compat/avochato/v1/calls",
            create_call,
            "Avochato's call token: refused, this inbox is SMS-only (403)",
            "avochato",
            auth="avochato",
            body=Credentials,
            responses={403: None},
        )
    ]
