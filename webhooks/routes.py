"""Every route of the service, in one place."""

from __future__ import annotations

from aiohttp import web

from agent.settings import Settings
from webhooks import api, inbound
from webhooks.idempotency import idempotent


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", api.healthz)
    app.router.add_post("/v1/conversations", idempotent(api.create_conversation))
    app.router.add_get("/v1/conversations", api.list_conversations)
    app.router.add_get("/v1/conversations/{conversation_id}", api.get_conversation)
    if settings.twilio_auth_token is not None and settings.public_url is not None:
        app.router.add_post("/webhooks/twilio/sms", inbound.twilio_sms)
        app.router.add_post("/webhooks/twilio/status", inbound.twilio_status)
    # The console provider has no signature: it exists only while it is the configured provider.
    if settings.sms_provider == "console":
        app.router.add_post("/webhooks/console/sms", inbound.console_sms)
        app.router.add_get("/webhooks/console/replies", inbound.console_replies)
