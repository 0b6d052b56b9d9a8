"""The baseline server: parses the same form and answers the same TwiML; no checks, no storage.

`python -m bench.floor PORT`
"""

from __future__ import annotations

import sys

from aiohttp import web

from webhooks.twilio import EMPTY_TWIML


async def _accept(request: web.Request) -> web.Response:
    await request.post()
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/twilio/sms", _accept)
    app.router.add_get("/healthz", _health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
