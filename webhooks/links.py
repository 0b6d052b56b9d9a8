"""`GET /l/{code}`: where a short link in a text leads."""

from __future__ import annotations

from aiohttp import web

from agent.links import follow_link
from webhooks.errors import HttpError
from webhooks.keys import DEPS


async def follow(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    url = await follow_link(request.app[DEPS].engine, code)
    if url is None:
        raise HttpError(404, "not_found", "no link has this code")
    # Not cached, so every visit reaches the service and is counted.
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
