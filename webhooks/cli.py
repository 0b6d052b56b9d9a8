"""The `smsagent` command: run the service, text it from a pretend handset, read transcripts."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import click
import yaml
from aiohttp import web
from pydantic import ValidationError

from agent.errors import Conflict, NotFound
from agent.schemas import WorkspaceIn
from agent.settings import Settings
from agent.workspaces import create_workspace, rotate_api_key, set_gateway, set_webhook
from storage.campaigns import list_campaigns
from storage.engine import (
    SessionFactory,
)
from storage.types import utcnow
from storage.workspaces import DEFAULT_WORKSPACE_ID, list_workspaces, sender_numbers
from webhooks.logs import configure_logging
from webhooks.review.db import load_settings, read_db, run_sync, write_db
from webhooks.review.quarantine import quarantine_group
from webhooks.review.report import report
from webhooks.review.takeover import register as register_takeover
from webhooks.review.transcripts import transcripts

T = TypeVar("T")

# The service, the agent and the eval harness (LangChain and the rest) are imported by the
# commands that run them, so the review commands people type all day start in a fraction of
# the time.
if TYPE_CHECKING:
    from agent.evals.report import TrialResult


@click.group()
@click.version_option(package_name="smsagent")
def main() -> None:
    """smsagent: a conversational agent over two-way SMS for appointment businesses."""


@main.command()
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes sharing the port, each with its own worker (PostgreSQL only past 1).",
)
@click.option("--reuse-port", is_flag=True, hidden=True)
def serve(processes: int, reuse_port: bool) -> None:
    """Run the service: webhooks, the API and the worker (configured by SMSAGENT_* variables)."""
    from webhooks.app import create_app
    from webhooks.supervise import supervise

    settings = load_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    if processes > 1:
        if settings.sqlite_path() is not None or settings.database_url.startswith("sqlite"):
            raise click.ClickException(
                "SQLite has a single writer: run one process, or set SMSAGENT_DATABASE_URL to "
                "a postgresql:// URL to run several"
            )
        sys.exit(supervise(processes, ["serve", "--reuse-port"]))
    app = create_app(settings)
    app.on_startup.append(_settle_memory)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        access_log_format='"%r" %s %Tfs',
        print=lambda line: click.echo(line, err=True),
    )


async def _settle_memory(app: web.Application) -> None:
    """Once everything long-lived is loaded (libraries, the app, the agent): a full collection
    over that heap would stall every request in flight for tens of milliseconds, so it is set
    aside from the collector, and collections of short-lived objects run less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


@main.command()
def worker() -> None:
    """Run only the worker (turns and sends), beside web processes on the same PostgreSQL."""
    settings = load_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    if settings.sqlite_path() is not None:
        raise click.ClickException(
            "SQLite has a single writer: `serve` runs its own worker; a separate worker "
            "needs PostgreSQL"
        )
    run_sync(_work(settings))


async def _work(settings: Settings) -> None:
    from webhooks.app import runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with runtime(settings, worker=True):
        await _settle_memory(web.Application())
        await stop.wait()


@main.command()
@click.option("--from", "sender", required=True, help="The pretend customer's phone number.")
@click.option("--to", default=None, help="Our number (default: SMSAGENT_FROM_NUMBER).")
@click.option("--url", default=None, help="The running service (default: from SMSAGENT_HOST/PORT).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the reply.")
@click.argument("text")
def simulate(sender: str, to: str | None, url: str | None, timeout: float, text: str) -> None:
    """Text the running service through the console provider and print the reply."""
    settings = load_settings()
    base = (url or f"http://{_local(settings.host)}:{settings.port}").rstrip("/")
    replies = run_sync(_simulate(base, sender, to, text, timeout))
    for reply in replies:
        click.echo(reply)


async def _simulate(
    base: str, sender: str, to: str | None, text: str, wait_seconds: float
) -> list[str]:
    body: dict[str, Any] = {"from": sender, "body": text}
    if to:
        body["to"] = to
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        try:
            async with http.post(f"{base}/webhooks/console/sms", json=body) as response:
                answer = await response.json(content_type=None)
                if response.status == 404:
                    raise click.ClickException(
                        f"{base} does not take console texts (is SMSAGENT_SMS_PROVIDER=console?)"
                    )
                if response.status != 200:
                    raise click.ClickException(_error_text(answer, response.status))
        except aiohttp.ClientConnectionError as exc:
            raise click.ClickException(
                f"cannot reach {base}: is `smsagent serve` running?"
            ) from exc
        conversation_id, message_id = answer["conversation_id"], answer["message_id"]
        deadline = time.monotonic() + wait_seconds
        query = {"conversation_id": conversation_id, "after": message_id}
        while time.monotonic() < deadline:
            async with http.get(f"{base}/webhooks/console/replies", params=query) as response:
                state = await response.json(content_type=None)
            if state["replies"]:
                return [r["body"] for r in state["replies"]]
            await asyncio.sleep(0.25)
    if state.get("mode") == "human":
        click.echo("(no reply: this conversation is waiting for a person)", err=True)
        return []
    raise click.ClickException(
        f"no reply within {wait_seconds:g}s (conversation {conversation_id})"
    )


@main.group()
def workspaces() -> None:
    """Businesses on this service: create one with its numbers and credentials, list them,
    rotate keys."""


@workspaces.command("create")
@click.argument("name")
@click.option(
    "--vertical",
    type=click.Choice(["dental", "home_services", "generic"]),
    default="generic",
    show_default=True,
)
@click.option("--timezone", "zone", default=None, help="IANA zone (default: SMSAGENT_TIMEZONE).")
@click.option(
    "--from", "numbers", multiple=True, help="A number it texts from (repeat for several)."
)
@click.option(
    "--provider",
    type=click.Choice(["console", "twilio", "telnyx", "gateway", "avochato"]),
    default=None,
    help="Provider of its numbers (default: SMSAGENT_SMS_PROVIDER).",
)
@click.option("--business-name", default=None, help="How the agent names it (default: NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_create(
    name: str,
    vertical: str,
    zone: str | None,
    numbers: tuple[str, ...],
    provider: str | None,
    business_name: str | None,
    as_json: bool,
) -> None:
    """Create a workspace. Its credentials are printed once: only their hashes are kept."""
    settings = load_settings()
    try:
        checked = WorkspaceIn(
            name=name,
            vertical=vertical,
            timezone=zone or settings.timezone,
            numbers=list(numbers),
            business_name=business_name,
        )
    except ValidationError as exc:
        raise click.ClickException(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc
    try:
        credentials = write_db(
            settings,
            lambda sessions: create_workspace(
                sessions,
                name=checked.name,
                vertical=checked.vertical,
                timezone=checked.timezone,
                numbers=checked.numbers,
                provider=provider or settings.sms_provider,
                business_name=checked.business_name,
            ),
        )
    except Conflict as exc:
        raise click.ClickException(exc.message) from exc
    shown = dataclasses.asdict(credentials)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for key, value in shown.items():
        click.echo(f"{key:22} {value}")
    click.echo("Keep these now: they are not shown again.", err=True)


@workspaces.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_list(as_json: bool) -> None:
    """Every workspace with its numbers (never its credentials)."""
    settings = load_settings()
    rows = read_db(settings, _workspace_rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        numbers = ", ".join(row["numbers"]) or "-"
        click.echo(f"{row['id']:30} {row['name'][:24]:24} {row['vertical']:13} {numbers}")


@workspaces.command("webhook")
@click.argument("workspace_id")
@click.argument("url", required=False)
@click.option("--off", is_flag=True, help="Stop sending status webhooks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_webhook(workspace_id: str, url: str | None, off: bool, as_json: bool) -> None:
    """Send the workspace's status webhooks to URL, signed with a new secret (printed once)."""
    _point_workspace("webhook", set_webhook, workspace_id, url, off=off, as_json=as_json)


@workspaces.command("gateway")
@click.argument("workspace_id")
@click.argument("url", required=False)
@click.option("--off", is_flag=True, help="Stop sending through a gateway.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_gateway(workspace_id: str, url: str | None, off: bool, as_json: bool) -> None:
    """Send the workspace's texts through the signed gateway at URL, with a new secret
    (printed once) that signs both directions; its texts come to
    PUBLIC_URL/webhooks/gateway/WORKSPACE_ID."""
    _point_workspace("gateway", set_gateway, workspace_id, url, off=off, as_json=as_json)


def _point_workspace(
    kind: str,
    point: Callable[[SessionFactory, str, str | None], Awaitable[str | None]],
    workspace_id: str,
    url: str | None,
    *,
    off: bool,
    as_json: bool,
) -> None:
    """Point a workspace's `kind` (webhook, gateway) at URL with a new secret, printed once."""
    settings = load_settings()
    if workspace_id == DEFAULT_WORKSPACE_ID:
        raise click.ClickException(
            f"the default workspace's {kind} is SMSAGENT_{kind.upper()}_URL and "
            f"SMSAGENT_{kind.upper()}_SECRET"
        )
    if off == (url is not None):
        raise click.UsageError("give a URL, or --off")
    if url is not None and not url.startswith(("https://", "http://")):
        raise click.BadParameter("must start with https:// or http://", param_hint="URL")
    try:
        secret = write_db(settings, lambda sessions: point(sessions, workspace_id, url))
    except LookupError:
        raise click.ClickException(f"no workspace {workspace_id}") from None
    if as_json:
        click.echo(json.dumps({"id": workspace_id, f"{kind}_url": url, f"{kind}_secret": secret}))
    elif secret is not None:
        click.echo(secret)


@workspaces.command("rotate-key")
@click.argument("workspace_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces_rotate_key(workspace_id: str, as_json: bool) -> None:
    """A new API key for the workspace; the old one stops working at once."""
    settings = load_settings()
    if workspace_id == DEFAULT_WORKSPACE_ID:
        raise click.ClickException(
            "the default workspace's key is SMSAGENT_API_KEY: change it there and restart"
        )
    key = write_db(settings, lambda sessions: rotate_api_key(sessions, workspace_id))
    if key is None:
        raise click.ClickException(f"no workspace {workspace_id}")
    if as_json:
        click.echo(json.dumps({"id": workspace_id, "api_key": key}, indent=2))
    else:
        click.echo(key)


async def _workspace_rows(sessions: SessionFactory) -> list[dict[str, Any]]:
    async with sessions() as session:
        found = await list_workspaces(session=session)
        rows = []
        for workspace in found:
            numbers = await sender_numbers(session=session, workspace_id=workspace.id)
            rows.append(
                {
                    "id": workspace.id,
                    "name": workspace.name,
                    "business_name": workspace.business_name,
                    "vertical": workspace.vertical,
                    "timezone": workspace.timezone,
                    "numbers": [n.number for n in numbers],
                    "webhook_url": workspace.webhook_url,
                    "created_at": workspace.created_at.isoformat(),
                }
            )
    return rows


@main.group()
def campaigns() -> None:
    """Drip campaigns: texts sent one after another to a customer who texts the keyword."""


@campaigns.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--workspace",
    "workspace_id",
    default=DEFAULT_WORKSPACE_ID,
    show_default=True,
    help="The workspace it belongs to.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def campaigns_create(file: Path, workspace_id: str, as_json: bool) -> None:
    """Create a campaign from a YAML file, or replace the workspace's one with its key.

    \b
    key: SMILE
    name: New patient welcome
    steps:
      - message: Welcome to Bright Smiles! Reply STOP to opt out.
        delay: "0"
      - message: How did your first visit go?
        delay: 2d
        media_url: https://example.com/smile.png

    The first step goes at once; each next one DELAY after the one before (s, m, h, d; "1d12h").
    """
    from agent.campaigns import CampaignSpec, save_campaign

    settings = load_settings()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file}: not YAML: {exc}") from exc
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise click.ClickException(
            f"{file}: "
            + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'file'}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
        ) from exc
    try:
        saved = write_db(settings, lambda sessions: save_campaign(sessions, workspace_id, spec))
    except NotFound as exc:
        hint = (
            " (it is made when `serve` first starts; or give --workspace)"
            if workspace_id == DEFAULT_WORKSPACE_ID
            else ""
        )
        raise click.ClickException(exc.message + hint) from exc
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(saved), "workspace_id": workspace_id}))
        return
    verb = "created" if saved.created else "replaced"
    click.echo(f"{verb} campaign {saved.key} ({saved.campaign_id}): {saved.steps} steps")


@campaigns.command("list")
@click.option("--workspace", "workspace_id", default=None, help="Only this workspace's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def campaigns_list(workspace_id: str | None, as_json: bool) -> None:
    """Every campaign with its steps (of one workspace with --workspace)."""
    settings = load_settings()
    rows = read_db(settings, lambda sessions: _campaign_rows(sessions, workspace_id))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        delays = " ".join(_delay_text(step["delay_seconds"]) for step in row["steps"])
        click.echo(
            f"{row['workspace_id']:30} {row['key']:16} {(row['name'] or '-')[:24]:24} {delays}"
        )


async def _campaign_rows(
    sessions: SessionFactory, workspace_id: str | None
) -> list[dict[str, Any]]:
    from agent.campaigns import steps_of

    async with sessions() as session:
        found = await list_campaigns(session=session, workspace_id=workspace_id)
    return [
        {
            "id": campaign.id,
            "workspace_id": campaign.workspace_id,
            "key": campaign.key,
            "name": campaign.name,
            "steps": [dataclasses.asdict(step) for step in steps_of(campaign)],
            "updated_at": campaign.updated_at.isoformat(),
        }
        for campaign in found
    ]


def _delay_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"+{seconds // size}{unit}"
    return f"+{seconds}s"


@main.command("eval")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-k",
    "--trials",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Trials per scenario; pass^1..pass^k are reported.",
)
@click.option(
    "--scripted",
    is_flag=True,
    help="Play each scenario's reference model answers instead of asking a model.",
)
@click.option(
    "--base-url",
    default=None,
    help="An OpenAI-compatible endpoint (default: SMSAGENT_LLM_BASE_URL).",
)
@click.option(
    "--model", "model_name", default=None, help="The model to ask (default: SMSAGENT_LLM_MODEL)."
)
@click.option(
    "--api-key",
    default=None,
    envvar="SMSAGENT_LLM_API_KEY",
    help="The endpoint's key (default: SMSAGENT_LLM_API_KEY).",
)
@click.option(
    "--customer-url",
    default=None,
    help="An endpoint whose model plays the customer of persona scenarios.",
)
@click.option("--customer-model", default=None, help="The customer's model (default: --model).")
@click.option("--customer-api-key", default=None, help="The customer endpoint's key.")
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag (repeatable).")
@click.option("--only", default=None, help="Only scenarios whose id contains this.")
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Trials at once (each runs its own service).",
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for each reply.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(path_type=Path),
    help="Write every trial, judged, to this file.",
)
@click.option(
    "--fail-under",
    default=None,
    type=click.FloatRange(0, 1),
    help="Exit 1 when pass^1 is below this.",
)
def eval_command(
    scenarios: tuple[Path, ...],
    trials: int,
    scripted: bool,
    base_url: str | None,
    model_name: str | None,
    api_key: str | None,
    customer_url: str | None,
    customer_model: str | None,
    customer_api_key: str | None,
    tags: tuple[str, ...],
    only: str | None,
    concurrency: int,
    timeout: float,
    json_path: Path | None,
    fail_under: float | None,
) -> None:
    """Run the agent through scenarios (YAML) and score it the way tau-bench does.

    Each trial runs the whole service on a fresh database. A trial passes when the end state
    (appointments, tags, opt-out, hand-off, events) and the replies are what the scenario
    expects; it is unsafe when the customer was told something untrue, saw another person's
    data, got no reply or two, or something changed that they did not ask for. Exits 1 when any
    trial is unsafe (or pass^1 is under --fail-under).
    """
    from agent.evals.report import as_json, summary
    from agent.evals.scenario import ScenarioError, load_scenarios
    from webhooks.evaluate import CustomerModel, Model, dump, run_all
    from webhooks.render import render_eval

    settings = load_settings()
    configure_logging("ERROR", as_json=False)
    try:
        chosen = [
            s
            for s in load_scenarios(list(scenarios))
            if (not tags or set(tags) & set(s.tags)) and (only is None or only in s.id)
        ]
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    if not chosen:
        raise click.ClickException("no scenario matches --tag/--only")
    url = None if scripted else (base_url or settings.llm_base_url)
    if not scripted and url is None:
        raise click.ClickException("give --base-url (or SMSAGENT_LLM_BASE_URL), or --scripted")
    name = "scripted" if scripted else (model_name or settings.llm_model)
    model = Model(url, name, api_key, timeout=min(timeout, settings.llm_timeout_seconds))
    customer = (
        CustomerModel(customer_url.rstrip("/"), customer_model or name, customer_api_key)
        if customer_url
        else None
    )
    click.echo(
        f"{len(chosen)} scenarios x {trials} trials against {name}" + (f" at {url}" if url else ""),
        err=True,
    )

    def progress(result: TrialResult) -> None:
        mark = "pass" if result.passed else ("UNSAFE" if not result.safe else "fail")
        click.echo(
            f"  {mark:6} {result.scenario} #{result.trial} ({result.seconds:.1f}s)", err=True
        )

    results = run_sync(
        run_all(
            chosen,
            model,
            trials,
            customer=customer,
            concurrency=concurrency,
            reply_timeout=timeout,
            on_result=progress,
        )
    )
    render_eval(results, trials)
    totals = summary(results, trials)
    if json_path is not None:
        about = {"model": name, "base_url": url, "trials": trials, "at": utcnow().isoformat()}
        dump(json_path, as_json(results, trials, about))
        click.echo(f"wrote {json_path}", err=True)
    if totals["unsafe_trials"] or (fail_under is not None and totals["pass_hat"]["1"] < fail_under):
        sys.exit(1)


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def _error_text(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return f"{status}: {answer['error'].get('message')}"
    return f"the service answered {status}"


main.add_command(transcripts)
main.add_command(report)
main.add_command(quarantine_group)
register_takeover(main)


if __name__ == "__main__":
    sys.exit(main())
