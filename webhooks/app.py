"""The application factory: the one place that wires storage, the agent and the edge together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

import aiohttp
from aiohttp import web

from agent.brain import Brain, build_brain
from agent.deps import DEFAULT_WORKSPACE_ID, Deps, Nudge
from agent.inbound import TURN_JOB
from agent.outbox import SEND_JOB, SendHandler
from agent.providers import ConsoleProvider, SmsProvider
from agent.settings import Settings
from agent.turns import TurnHandler
from agent.worker import Worker
from storage.engine import create_engine, create_session_factory
from storage.migrate import migrate
from storage.workspaces import ensure_workspace
from webhooks.api import hash_api_key
from webhooks.errors import error_middleware
from webhooks.keys import DEPS, SETTINGS
from webhooks.routes import setup_routes
from webhooks.twilio import TwilioProvider

log = logging.getLogger("smsagent.app")

Configured = Literal["configured"]
Lifetime = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    settings: Settings,
    *,
    brain: Brain | Configured | None = "configured",
    providers: Mapping[str, SmsProvider] | None = None,
) -> web.Application:
    """Build the service. `brain` and `providers` replace the configured ones when given."""
    app = web.Application(middlewares=[error_middleware], client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_lifetime(brain, providers))
    setup_routes(app, settings)
    return app


def _lifetime(
    brain_override: Brain | Configured | None,
    provider_override: Mapping[str, SmsProvider] | None,
) -> Lifetime:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if (path := settings.sqlite_path()) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.database_url, schema=settings.database_schema)
        await migrate(engine, schema=settings.database_schema)
        sessions = create_session_factory(engine)
        async with sessions() as session, session.begin():
            await ensure_workspace(
                session=session,
                workspace_id=DEFAULT_WORKSPACE_ID,
                name="default",
                business_name=settings.business_name,
                timezone=settings.timezone,
                vertical=settings.vertical,
                api_key_hash=(
                    hash_api_key(settings.api_key.get_secret_value()) if settings.api_key else None
                ),
            )
        http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.send_timeout_seconds)
        )
        brain = build_brain(settings) if brain_override == "configured" else brain_override
        deps = Deps(
            settings=settings,
            sessions=sessions,
            providers=provider_override or _providers(settings, http),
            brain=brain,
            nudge=Nudge(),
        )
        app[DEPS] = deps
        worker = Worker(
            sessions=sessions,
            handlers={TURN_JOB: TurnHandler(deps), SEND_JOB: SendHandler(deps)},
            nudge=deps.nudge,
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.job_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )
        task = asyncio.create_task(worker.run(), name="worker") if settings.run_worker else None
        log.info(
            "app.started provider=%s llm=%s database=%s",
            settings.sms_provider,
            "on" if deps.brain else "off",
            engine.dialect.name,
        )
        try:
            yield
        finally:
            if task is not None:
                await worker.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await http.close()
            await engine.dispose()

    return lifetime


def _providers(settings: Settings, http: aiohttp.ClientSession) -> dict[str, SmsProvider]:
    providers: dict[str, SmsProvider] = {"console": ConsoleProvider()}
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.public_url:
        providers["twilio"] = TwilioProvider(
            http=http,
            api_url=settings.twilio_api_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            public_url=settings.public_url,
        )
    return providers
