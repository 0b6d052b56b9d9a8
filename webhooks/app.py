"""The application factory: the one place that wires storage, the agent and the edge together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

import aiohttp
from aiohttp import web

from agent import broadcasts
from agent.brain import Brain, build_brain
from agent.deps import DEFAULT_WORKSPACE_ID, Deps, Nudge
from agent.hooks import HOOK_JOB, STATUS_CALLBACK_JOB, HookHandler, store_inbound_reported
from agent.inbound import TURN_JOB
from agent.media import build_keeper
from agent.outbox import SEND_JOB, SendHandler
from agent.phones import mask_phone
from agent.providers import ConsoleProvider, SmsProvider
from agent.settings import Settings
from agent.turns import TurnHandler
from agent.worker import LaneSpec, Worker
from agent.workspaces import NumberBook, hash_secret
from storage.batching import GroupCommit
from storage.engine import (
    SessionFactory,
    create_engine,
    create_reader_engine,
    create_session_factory,
)
from storage.migrate import migrate
from storage.notify import listen_for_jobs, plain_dsn
from storage.raw import finish_plans
from storage.templates import install_builtin_templates
from storage.workspaces import NumberTaken, claim_sender_number, ensure_workspace
from webhooks.avochato.status_callbacks import StatusCallbacks
from webhooks.avochato_sender import AvochatoProvider
from webhooks.errors import error_middleware
from webhooks.gateway import GatewayProvider, Gateways
from webhooks.keys import DEPS, SETTINGS
from webhooks.outbound import callback_session
from webhooks.ratelimit import rate_limit_middleware
from webhooks.routes import setup_routes
from webhooks.telnyx import TelnyxProvider
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
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware(settings)],
        client_max_size=256 * 1024,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_lifetime(brain, providers))
    setup_routes(app, settings)
    return app


def _lifetime(
    brain: Brain | Configured | None, providers: Mapping[str, SmsProvider] | None
) -> Lifetime:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        async with runtime(
            settings, brain=brain, providers=providers, worker=settings.run_worker
        ) as deps:
            app[DEPS] = deps
            yield

    return lifetime


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings,
    *,
    brain: Brain | Configured | None = "configured",
    providers: Mapping[str, SmsProvider] | None = None,
    worker: bool = True,
    configure: bool = True,
) -> AsyncIterator[Deps]:
    """Everything but HTTP: the database, the inbound writer, the providers, the model and (when
    `worker`) the worker with its lanes. `serve` runs it under the app; `worker` on its own.
    `configure` brings the default workspace in line with the settings (a command that only
    borrows the service's machinery, like a quarantine replay, leaves it as the service set it)."""
    if (path := settings.sqlite_path()) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        settings.database_url,
        schema=settings.database_schema,
        pool_size=settings.database_pool_size,
    )
    reader = create_reader_engine(settings.database_url)
    try:
        await migrate(engine, schema=settings.database_schema)
        sessions = create_session_factory(engine)
        if configure:
            await _configure_default_workspace(settings, sessions)
        nudge = Nudge()
        loop = asyncio.get_running_loop()

        def turns_waiting() -> None:
            nudge(TURN_JOB, due_at=loop.time() + settings.turn_quiet_seconds)

        inbound = GroupCommit(
            engine,
            store_inbound_reported,
            name="inbound",
            max_batch=settings.ingest_max_batch,
            after_commit=turns_waiting,
        )
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.send_timeout_seconds)
            ) as http,
            callback_session(
                settings, timeout=aiohttp.ClientTimeout(total=settings.send_timeout_seconds)
            ) as callbacks,
            contextlib.AsyncExitStack() as background,
        ):
            reads = create_session_factory(reader) if reader is not None else sessions
            senders = providers or _providers(settings, http, callbacks=callbacks, reads=reads)
            deps = Deps(
                settings=settings,
                engine=engine,
                sessions=sessions,
                reads=reads,
                reader=reader or engine,
                providers=senders,
                brain=build_brain(settings) if brain == "configured" else brain,
                nudge=nudge,
                inbound=inbound,
                numbers=NumberBook(sessions, DEFAULT_WORKSPACE_ID),
                # Media URLs come from texts: fetched with the guarded client, like callbacks.
                media=build_keeper(
                    settings,
                    fetch_with=callbacks,
                    store_with=http,
                    engine=engine,
                    reader=reader or engine,
                    providers=senders,
                ),
            )
            inbound.start()
            background.push_async_callback(inbound.stop)
            if worker:
                await _start_worker(deps, background, callbacks)
            log.info(
                "app.started provider=%s llm=%s database=%s worker=%s",
                settings.sms_provider,
                "on" if deps.brain else "off",
                engine.dialect.name,
                "on" if worker else "off",
            )
            yield deps
    finally:
        await finish_plans(engine)
        await engine.dispose()
        if reader is not None:
            await finish_plans(reader)
            await reader.dispose()


async def _configure_default_workspace(settings: Settings, sessions: SessionFactory) -> None:
    """The default workspace as the settings describe it, with its numbers and templates."""
    async with sessions() as session, session.begin():
        await ensure_workspace(
            session=session,
            workspace_id=DEFAULT_WORKSPACE_ID,
            name="default",
            business_name=settings.business_name,
            timezone=settings.timezone,
            vertical=settings.vertical,
            api_key_hash=(
                hash_secret(settings.api_key.get_secret_value()) if settings.api_key else None
            ),
            hours=settings.business_hours,
            closed_days=settings.closed_days,
            scheduling=settings.scheduling,
            appointment_types=settings.appointment_types,
            webhook=(
                (settings.webhook_url, settings.webhook_secret.get_secret_value())
                if settings.webhook_url and settings.webhook_secret
                else None
            ),
            gateway=(
                (settings.gateway_url, settings.gateway_secret.get_secret_value())
                if settings.gateway_url and settings.gateway_secret
                else None
            ),
        )
        await install_builtin_templates(session=session, workspace_id=DEFAULT_WORKSPACE_ID)
        numbers = {settings.from_number: settings.sms_provider, **settings.sender_numbers}
        for number, provider in numbers.items():
            try:
                await claim_sender_number(
                    session=session,
                    workspace_id=DEFAULT_WORKSPACE_ID,
                    number=number,
                    provider=provider,
                )
            except NumberTaken:
                log.warning(
                    "app.number_taken number=%s: configured for the default workspace, "
                    "it sends for another one",
                    mask_phone(number),
                )


async def _start_worker(
    deps: Deps, background: contextlib.AsyncExitStack, callbacks: aiohttp.ClientSession
) -> None:
    """The worker and its lanes; `callbacks` is the guarded client for business-given URLs."""
    settings = deps.settings
    turns = TurnHandler(deps)
    worker = Worker(
        engine=deps.engine,
        handlers={
            TURN_JOB: turns,
            SEND_JOB: SendHandler(deps),
            HOOK_JOB: HookHandler(deps, callbacks),
            STATUS_CALLBACK_JOB: StatusCallbacks(deps, callbacks),
            broadcasts.BROADCAST_JOB: broadcasts.BroadcastHandler(deps),
        },
        lanes=[
            LaneSpec("sends", (SEND_JOB,), settings.worker_sends, batch=50),
            LaneSpec("hooks", (HOOK_JOB, STATUS_CALLBACK_JOB), settings.worker_hooks, batch=50),
            LaneSpec("turns", (TURN_JOB,), settings.worker_turns, batch=100),
            # Runs last for seconds (paced sends): never in the way of a reply or a webhook.
            broadcasts.LANE,
        ],
        nudge=deps.nudge,
        lease_seconds=settings.job_lease_seconds,
        poll_seconds=settings.worker_poll_seconds,
        yield_to=deps.inbound.busy,
        keep_done_seconds=settings.job_keep_done_hours * 3600,
    )
    deps.dispatch.run_now = worker.run_now
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(), name="worker")]
    if deps.engine.dialect.name == "postgresql":
        listener = listen_for_jobs(plain_dsn(deps.engine.url), deps.nudge, stopping)
        tasks.append(asyncio.create_task(listener, name="job-listener"))

    async def stop() -> None:
        stopping.set()
        await worker.stop()
        # The loops end by themselves; cancelling is for one stuck past the grace period.
        _, stuck = await asyncio.wait(tasks, timeout=5)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    background.push_async_callback(stop)


def _providers(
    settings: Settings,
    http: aiohttp.ClientSession,
    *,
    callbacks: aiohttp.ClientSession,
    reads: SessionFactory,
) -> dict[str, SmsProvider]:
    """The configured senders. `callbacks` is the guarded client for business-given URLs (a
    workspace's gateway); `reads` finds each workspace's gateway."""
    providers: dict[str, SmsProvider] = {"console": ConsoleProvider()}
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.public_url:
        providers["twilio"] = TwilioProvider(
            http=http,
            api_url=settings.twilio_api_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            public_url=settings.public_url,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            advanced_opt_out=settings.twilio_advanced_opt_out,
        )
    if settings.telnyx_api_key and settings.telnyx_public_key and settings.public_url:
        providers["telnyx"] = TelnyxProvider(
            http=http,
            api_url=settings.telnyx_api_url,
            api_key=settings.telnyx_api_key.get_secret_value(),
            public_url=settings.public_url,
            messaging_profile_id=settings.telnyx_messaging_profile_id,
            answers_keywords=settings.telnyx_answers_keywords,
        )
    # Each workspace's gateway is its own (the database has its URL and secret): the provider
    # exists wherever statuses can find their way back.
    if settings.public_url:
        providers["gateway"] = GatewayProvider(
            http=callbacks,
            gateways=Gateways(reads),
            public_url=settings.public_url,
            settings=settings,
        )
    if settings.avochato_auth_id and settings.avochato_auth_secret and settings.public_url:
        providers["avochato"] = AvochatoProvider(
            http=http,
            api_url=settings.avochato_api_url,
            auth_id=settings.avochato_auth_id,
            auth_secret=settings.avochato_auth_secret.get_secret_value(),
            public_url=settings.public_url,
        )
    return providers
