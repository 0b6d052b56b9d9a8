"""`smsagent quarantine list | show | replay`: webhooks refused for their signature, kept whole.

A replay checks the kept request again with the configuration as it is now (its time window
measured from when it arrived) and processes it as if it had just come; the provider's own
message id keeps a text from being stored twice, however often it is replayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.settings import Settings
from storage import quarantine
from storage.engine import SessionFactory
from storage.models import QuarantinedWebhook
from storage.types import utcnow
from webhooks.review.db import load_settings, read_db, run_sync, write_db
from webhooks.review.takeover import operator
from webhooks.review.terminal import console, on_terminal
from webhooks.review.when import parse_moment

# What `show` prints of a body at most; --json and replay always use all of it.
SHOWN_BYTES = 4000


@click.group("quarantine")
def quarantine_group() -> None:
    """Provider webhooks refused for their signature: list, read and replay them."""


@quarantine_group.command("list")
@click.option("--provider", default=None, help="Only this provider's (twilio, telnyx, …).")
@click.option("--since", default=None, help="Since a moment: 30m, 24h, 7d, a date, an ISO time.")
@click.option("--pending", is_flag=True, help="Only those not replayed yet.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(
    provider: str | None, since: str | None, pending: bool, limit: int, as_json: bool
) -> None:
    """Newest first: when, which provider, where it was sent, and why it was refused."""
    settings = load_settings()
    after = (
        None
        if since is None
        else parse_moment(since, now=settings.review_now or utcnow(), zone=settings.timezone)
    )

    async def query(sessions: SessionFactory) -> list[QuarantinedWebhook]:
        async with sessions() as session:
            return await quarantine.listed(
                session=session, provider=provider, since=after, pending_only=pending, limit=limit
            )

    rows = read_db(settings, query)
    if as_json:
        for row in rows:
            click.echo(json.dumps(_summary(row)))
        return
    if not on_terminal():
        for row in rows:
            click.echo(
                "\t".join(
                    (
                        row.id,
                        _local(row.received_at, settings),
                        row.provider,
                        row.path,
                        _replayed(row) or "pending",
                        row.reason,
                    )
                )
            )
        return
    if not rows:
        click.echo("Nothing in quarantine.")
        return
    table = Table(box=None, pad_edge=False)
    for name in ("id", "received", "provider", "path", "replayed", "reason"):
        table.add_column(name, no_wrap=name != "reason", overflow="fold")
    for row in rows:
        table.add_row(
            row.id,
            _local(row.received_at, settings),
            row.provider,
            row.path,
            _replayed(row) or "pending",
            row.reason,
        )
    console().print(table)


@quarantine_group.command("show")
@click.argument("webhook_id")
@click.option("--json", "as_json", is_flag=True, help="All of it as JSON (the body as text).")
def show_command(webhook_id: str, as_json: bool) -> None:
    """One kept webhook: its headers, body and why it was refused."""
    settings = load_settings()

    async def query(sessions: SessionFactory) -> QuarantinedWebhook:
        async with sessions() as session:
            return await _find(session, webhook_id)

    row = read_db(settings, query)
    if as_json:
        click.echo(json.dumps({**_summary(row), "headers": row.headers, "body": _text(row.body)}))
        return
    lines = [
        f"id        {row.id}",
        f"received  {_local(row.received_at, settings)} from {row.remote or 'unknown'}",
        f"provider  {row.provider}",
        f"request   {row.method} {row.path}",
        f"reason    {row.reason}",
        f"replayed  {_replayed(row) or 'not yet'}",
        "",
        "headers",
        *(f"  {name}: {value}" for name, value in sorted(row.headers.items())),
        "",
        f"body ({len(row.body)} bytes)",
    ]
    body = _text(row.body)
    lines.append(body[:SHOWN_BYTES] + ("…" if len(body) > SHOWN_BYTES else ""))
    click.echo("\n".join(lines))


@dataclass(frozen=True)
class Replayed:
    id: str
    provider: str
    status: int
    answer: str
    checked: str | None  # None: the signature holds now; else why it still fails (--trust)
    dry_run: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status,
            "answer": self.answer,
            "signature": "valid" if self.checked is None else f"trusted: {self.checked}",
            "dry_run": self.dry_run,
        }


@quarantine_group.command("replay")
@click.argument("webhook_id")
@click.option(
    "--trust",
    is_flag=True,
    help="Process it even though its signature still fails (you vouch for where it came from).",
)
@click.option("--again", is_flag=True, help="Replay one already replayed (nothing is doubled).")
@click.option("--dry-run", is_flag=True, help="Only check its signature with today's settings.")
@click.option("--as", "name", default=None, help="Who replays it (default: $SMSAGENT_OPERATOR).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def replay_command(
    webhook_id: str, trust: bool, again: bool, dry_run: bool, name: str | None, as_json: bool
) -> None:
    """Check a kept webhook again with the configuration as it is now, and process it."""
    settings = load_settings()
    # Brought up to date like every writer, then run through the service's own code.
    write_db(settings, lambda _: _nothing())
    done = run_sync(
        _replay(settings, webhook_id, trust=trust, again=again, dry_run=dry_run, by=operator(name))
    )
    if as_json:
        click.echo(json.dumps(done.as_json()))
    elif done.dry_run:
        click.echo(f"{done.id}: the signature holds with the current settings; not replayed")
    else:
        how = "" if done.checked is None else f" (trusted: {done.checked})"
        click.echo(f"{done.id}: replayed{how}; the service answered {done.status} {done.answer}")
    if done.status >= 400:
        raise SystemExit(1)


async def _nothing() -> None:
    return None


async def _replay(
    settings: Settings, ref: str, *, trust: bool, again: bool, dry_run: bool, by: str
) -> Replayed:
    from webhooks.app import runtime
    from webhooks.carriers import Delivery
    from webhooks.errors import HttpError
    from webhooks.registry import carriers

    async with runtime(settings, brain=None, worker=False, configure=False) as deps:
        async with deps.sessions() as session:
            row = await _find(session, ref)
        if row.replayed_at is not None and not again and not dry_run:
            raise click.ClickException(
                f"{row.id} was replayed {_replayed(row)}; --again replays it once more "
                "(its texts are not stored twice)"
            )
        carrier = carriers().get(row.provider)
        if carrier is None:
            raise click.ClickException(f"{row.id} is for {row.provider!r}, which is not known")
        delivery = Delivery(
            provider=row.provider,
            method=row.method,
            path=row.path,
            headers=row.headers,
            body=row.body,
            received_at=row.received_at,
            remote=row.remote,
        )
        reason = await carrier.check(deps, delivery)
        if reason is not None and not trust:
            raise click.ClickException(
                f"{row.id} is still refused: {reason}. Fix the setting and replay it again, or "
                "give --trust if you know it is genuine"
            )
        if dry_run:
            return Replayed(row.id, row.provider, 200, "", reason, dry_run=True)
        try:
            response = await carrier.process(deps, delivery)
            status, answer = response.status, response.text or ""
        except HttpError as exc:
            status, answer = exc.status, f"{exc.code}: {exc.message}"
        async with deps.sessions() as session, session.begin():
            await quarantine.mark_replayed(session=session, webhook_id=row.id, status=status, by=by)
        return Replayed(row.id, row.provider, status, answer[:200], reason, dry_run=False)


async def _find(session: AsyncSession, ref: str) -> QuarantinedWebhook:
    try:
        row = await quarantine.find(session=session, id_or_prefix=ref.strip())
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    if row is None:
        raise click.ClickException(f"no quarantined webhook {ref!r}")
    return row


def _summary(row: QuarantinedWebhook) -> dict[str, Any]:
    return {
        "id": row.id,
        "provider": row.provider,
        "method": row.method,
        "path": row.path,
        "reason": row.reason,
        "remote": row.remote,
        "received_at": row.received_at.isoformat(),
        "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
        "replay_status": row.replay_status,
        "replayed_by": row.replayed_by,
        "bytes": len(row.body),
    }


def _replayed(row: QuarantinedWebhook) -> str | None:
    if row.replayed_at is None:
        return None
    when = row.replayed_at.isoformat(timespec="seconds")
    return f"{when} by {row.replayed_by} -> {row.replay_status}"


def _local(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")
