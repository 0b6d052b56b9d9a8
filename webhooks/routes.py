"""Every route of the service, in one place, with what it takes and gives back.

The table below both mounts the routes and describes them: `/openapi.json` is generated from it
(`webhooks/openapi.py`), so a route's documented body, query and answers are the pydantic
models its handler validates with, never a second copy written by hand.
"""

from __future__ import annotations

from aiohttp import web

from agent.schemas import (
    ConversationListPage,
    ConversationOut,
    ConversationPatch,
    ConversationQuery,
    ConversationState,
    HumanReply,
    KickoffRequest,
    KickoffResult,
    MessageDetail,
    MessageRequest,
    MessageSent,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
)
from agent.settings import Settings
from webhooks import api, campaigns_api, compat, inbound, links, openapi
from webhooks.avochato.routes import inbox_routes
from webhooks.avochato_sender import INBOUND_PATH as AVOCHATO_INBOUND_PATH
from webhooks.avochato_sender import STATUS_PATH as AVOCHATO_STATUS_PATH
from webhooks.carriers import carrier_handler
from webhooks.gateway import ROUTE as GATEWAY_ROUTE
from webhooks.idempotency import idempotent
from webhooks.registry import carriers
from webhooks.routing import RETRY_SAFE, Route
from webhooks.telnyx import WEBHOOK_PATH as TELNYX_PATH
from webhooks.twilio import SMS_PATH, STATUS_CALLBACK_PATH


def api_routes() -> list[Route]:
    """The routes businesses and integrators call."""
    return [
        Route(
            "GET",
            "/healthz",
            api.healthz,
            "Whether the service and its database answer",
            "service",
            auth="none",
        ),
        Route(
            "GET",
            "/openapi.json",
            openapi.openapi_handler(all_routes),
            "This API described in OpenAPI 3.1, generated from the route table",
            "service",
            auth="none",
        ),
        Route(
            "POST",
            "/v1/conversations",
            idempotent(api.create_conversation),
            "Start a conversation: text a customer first, with what the agent should know",
            "conversations",
            body=KickoffRequest,
            responses={201: KickoffResult},
            headers=RETRY_SAFE,
        ),
        Route(
            "GET",
            "/v1/conversations",
            api.list_conversations,
            "List the workspace's conversations, newest first",
            "conversations",
            query=ConversationQuery,
            responses={200: ConversationListPage},
        ),
        Route(
            "GET",
            "/v1/conversations/{conversation_id}",
            api.get_conversation,
            "A conversation with its contact, appointment, messages, events and agent runs",
            "conversations",
            responses={200: ConversationOut},
        ),
        Route(
            "PATCH",
            "/v1/conversations/{conversation_id}",
            api.update_conversation,
            "Close or reopen a conversation, or hand it between the agent and people",
            "conversations",
            body=ConversationPatch,
            responses={200: ConversationState},
        ),
        Route(
            "POST",
            "/v1/conversations/{conversation_id}/messages",
            idempotent(api.reply_in_conversation),
            "A person's reply in the thread; the agent stays silent until handed back",
            "conversations",
            body=HumanReply,
            responses={201: MessageSent},
            headers=RETRY_SAFE,
        ),
        Route(
            "POST",
            "/v1/messages",
            idempotent(api.create_message),
            "Text a phone, now or at a time (in the live thread with them, or a new one)",
            "messages",
            body=MessageRequest,
            responses={201: MessageSent},
            headers=RETRY_SAFE,
        ),
        Route(
            "GET",
            "/v1/messages/{message_id}",
            api.get_message,
            "A message and its delivery status",
            "messages",
            responses={200: MessageDetail},
        ),
        Route(
            "DELETE",
            "/v1/messages/{message_id}",
            api.cancel_message,
            "Cancel a scheduled message (409 once it has gone)",
            "messages",
            responses={200: MessageDetail},
        ),
        Route(
            "GET",
            "/v1/media/{media_id}",
            api.get_media,
            "A photo or other file a customer texted, as kept (its own content type)",
            "messages",
            responses={200: None},
        ),
        Route(
            "GET",
            "/v1/templates",
            api.list_workspace_templates,
            "The workspace's message templates",
            "templates",
            responses={200: TemplateList},
        ),
        Route(
            "POST",
            "/v1/templates",
            idempotent(api.create_template),
            "Add a template; `{name}` marks a variable",
            "templates",
            body=TemplateIn,
            responses={201: TemplateOut},
            headers=RETRY_SAFE,
        ),
        Route(
            "GET",
            "/v1/templates/{template_id}",
            api.get_workspace_template,
            "A template",
            "templates",
            responses={200: TemplateOut},
        ),
        Route(
            "PUT",
            "/v1/templates/{template_id}",
            api.update_template,
            "Change a template",
            "templates",
            body=TemplateUpdate,
            responses={200: TemplateOut},
        ),
        Route(
            "DELETE",
            "/v1/templates/{template_id}",
            api.remove_template,
            "Delete a template",
            "templates",
            responses={204: None},
        ),
        Route(
            "POST",
            "/v1/campaigns/{key}/enroll",
            idempotent(campaigns_api.enroll_in_campaign),
            "Start a phone on a campaign, as if they had texted its keyword",
            "campaigns",
            body=campaigns_api.EnrollIn,
            responses={201: campaigns_api.EnrollmentOut},
            headers=RETRY_SAFE,
        ),
        Route(
            "POST",
            "/compat/avoca/v1/outbound/sms/send",
            idempotent(compat.avoca_send),
            "Avoca's outbound SMS send, as documented (Bearer key and X-Workspace-ID)",
            "compatible",
            body=compat.AvocaSend,
            responses={200: compat.AvocaAnswer},
            headers={
                "X-Workspace-ID": (True, "the id of the workspace the API key belongs to"),
                **RETRY_SAFE,
            },
        ),
        Route(
            "POST",
            "/compat/helloannie/v1/sms",
            idempotent(compat.helloannie_sms),
            "HelloAnnie's start of an outbound SMS conversation, as documented",
            "compatible",
            body=compat.AnnieSms,
            responses={200: compat.AnnieAnswer},
            headers=RETRY_SAFE,
        ),
        Route(
            "POST",
            "/compat/avaamo/sms/{channel_uuid}/send.json",
            compat.avaamo_send,
            "Avaamo's SMS send: the agent's greeting, with custom parameters as context",
            "compatible",
            auth="avaamo_channel",
            body=compat.AvaamoSend,
            responses={200: compat.AvaamoAnswer},
        ),
        Route(
            "GET",
            "/l/{code}",
            links.follow,
            "Follow a short link from a text: a redirect to its URL, the visit counted",
            "links",
            auth="none",
            responses={302: None},
            public=False,
        ),
    ]


def provider_routes(settings: Settings) -> list[Route]:
    """Where SMS providers deliver texts and statuses; mounted only when configured. Each is a
    carrier's: its signature is checked, and a failing request quarantined (carriers.py)."""
    twilio = settings.twilio_auth_token is not None and settings.public_url is not None
    avochato = not settings.missing_for("avochato")
    mounted = [
        (twilio, "twilio", SMS_PATH, "Twilio inbound text"),
        (twilio, "twilio", STATUS_CALLBACK_PATH, "Twilio delivery status"),
        (
            settings.telnyx_public_key is not None,
            "telnyx",
            TELNYX_PATH,
            "Telnyx messaging events: inbound texts and delivery statuses",
        ),
        # Any workspace may have a gateway (its secret is in the database): always mounted.
        (True, "gateway", GATEWAY_ROUTE, "The signed gateway's texts and statuses for a workspace"),
        (avochato, "avochato", AVOCHATO_STATUS_PATH, "Avochato status callback of a text sent"),
        (avochato, "avochato", AVOCHATO_INBOUND_PATH, "Avochato's message webhook: texts"),
    ]
    handlers = {name: carrier_handler(carrier) for name, carrier in carriers().items()}
    routes = [
        Route(
            "POST",
            path,
            handlers[name],
            summary,
            "providers",
            auth="provider_signature",
            public=False,
        )
        for on, name, path, summary in mounted
        if on
    ]
    # The console provider has no signature: it exists only while it is the configured provider.
    if settings.sms_provider == "console":
        routes += [
            Route(
                "POST",
                "/webhooks/console/sms",
                inbound.console_sms,
                "A text from the console's pretend handset",
                "providers",
                auth="none",
                public=False,
            ),
            Route(
                "GET",
                "/webhooks/console/replies",
                inbound.console_replies,
                "What the console's pretend handset received",
                "providers",
                auth="none",
                public=False,
            ),
        ]
    return routes


def all_routes(settings: Settings) -> list[Route]:
    return api_routes() + inbox_routes() + provider_routes(settings)


def setup_routes(app: web.Application, settings: Settings) -> None:
    for route in all_routes(settings):
        app.router.add_route(route.method, route.path, route.handler)
