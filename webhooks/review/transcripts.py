"""`smsagent transcripts`: find threads, read one whole, search every text, export them."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent.phones import InvalidPhoneNumber, normalize_phone
from agent.schemas import ConversationOut
from agent.settings import Settings
from agent.transcripts import load_many
from storage.engine import SessionFactory
from storage.review import (
    AmbiguousId,
    BadQuery,
    NoSuchId,
    ReviewFilter,
    count_threads,
    list_threads,
    resolve_conversation_id,
    search_messages,
    thread_keys,
)
from storage.types import utcnow
from webhooks.review.db import load_settings, read_db
from webhooks.review.html import HtmlExport
from webhooks.review.terminal import (
    console,
    hit_json,
    on_terminal,
    print_conversation,
    print_hits,
    print_threads,
    thread_json,
    thread_line,
    thread_table,
)
from webhooks.review.timeline import author, contact_name, local
from webhooks.review.when import parse_moment

F = TypeVar("F", bound=Callable[..., Any])
# Threads loaded whole per round trip while exporting: memory stays flat however many.
EXPORT_PAGE = 200


def now(settings: Settings) -> datetime:
    return settings.review_now or utcnow()


@click.group()
def transcripts() -> None:
    """Find conversations, read one whole, search every text, export them."""


def thread_filters(command: F) -> F:
    """The filters `list` and `export` share."""
    options = [
        click.option("--workspace", "workspace_id", help="Only this workspace's threads."),
        click.option("--status", type=click.Choice(["open", "pending", "closed"])),
        click.option("--mode", type=click.Choice(["agent", "human"])),
        click.option(
            "--needs-person",
            is_flag=True,
            help="Waiting for a person: handed off, or a person's thread the customer answered.",
        ),
        click.option("--tag", help="The contact carries this tag."),
        click.option(
            "--opted-out/--not-opted-out", "opted_out", default=None, help="Opted out or not."
        ),
        click.option(
            "--phone",
            help="The contact's number in any format, or its last digits (4 or more).",
        ),
        click.option("--text", "search", help="A text in the thread holds these words."),
        click.option("--since", help="Active since: 30m, 24h, 7d, 2w, a date or an ISO time."),
        click.option("--until", help="Active before: the same forms as --since."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_filter(settings: Settings, **given: Any) -> ReviewFilter:
    moment, zone = now(settings), settings.timezone
    phone, suffix = _phone(given.get("phone"))
    text = given.get("search")
    if text is not None and not re.search(r"\w", text):
        raise click.BadParameter("give at least one word", param_hint="--text")
    return ReviewFilter(
        workspace_id=given.get("workspace_id"),
        status=given.get("status"),
        mode=given.get("mode"),
        needs_person=bool(given.get("needs_person")),
        tag=given.get("tag"),
        opted_out=given.get("opted_out"),
        phone=phone,
        phone_suffix=suffix,
        text=text,
        since=parse_moment(given["since"], now=moment, zone=zone) if given.get("since") else None,
        until=(
            parse_moment(given["until"], now=moment, zone=zone, name="--until")
            if given.get("until")
            else None
        ),
    )


def _phone(given: str | None) -> tuple[str | None, str | None]:
    """A whole number (normalised to E.164) or the last digits of one."""
    if given is None:
        return None, None
    digits = re.sub(r"\D", "", given)
    if given.strip().startswith("+") or len(digits) >= 10:
        try:
            return normalize_phone(given), None
        except InvalidPhoneNumber as exc:
            raise click.BadParameter(str(exc), param_hint="--phone") from None
    if len(digits) < 4:
        raise click.BadParameter(
            "give the whole number or at least its last 4 digits", param_hint="--phone"
        )
    return None, digits


@transcripts.command("list")
@thread_filters
@click.option("--limit", default=25, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--watch", is_flag=True, help="Keep the list current as texts arrive (Ctrl-C ends).")
@click.option(
    "--every",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between looks with --watch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(limit: int, watch: bool, every: float, as_json: bool, **given: Any) -> None:
    """Threads, newest activity first. Ids are whole; any unique start of one works wherever
    an id is asked for."""
    settings = load_settings()
    where = build_filter(settings, **given)
    if watch:
        if as_json:
            raise click.UsageError("--watch prints as texts arrive; it does not take --json")
        read_db(settings, lambda sessions: _watch(sessions, settings, where, limit, every))
        return
    rows = read_db(settings, lambda sessions: _threads(sessions, where, limit))
    if as_json:
        click.echo(json.dumps([thread_json(r) for r in rows], indent=2, ensure_ascii=False))
    else:
        print_threads(rows, zone=settings.timezone)


async def _threads(sessions: SessionFactory, where: ReviewFilter, limit: int) -> list[Any]:
    async with sessions() as session:
        return await list_threads(await session.connection(), where, limit=limit)


async def _watch(
    sessions: SessionFactory, settings: Settings, where: ReviewFilter, limit: int, every: float
) -> None:
    """On a terminal the table redraws in place; piped, each thread prints again whenever it
    has new activity (like `tail -f`)."""
    zone = settings.timezone
    seen: dict[str, datetime] = {}
    try:
        if on_terminal():
            out = console()
            with Live(console=out, auto_refresh=False) as live:
                while True:
                    rows = await _threads(sessions, where, limit)
                    table = thread_table(rows, zone=zone, width=out.width)
                    table.caption = f"watching · {local(utcnow(), zone, '%H:%M:%S')} · Ctrl-C ends"
                    live.update(table, refresh=True)
                    await asyncio.sleep(every)
        while True:
            rows = await _threads(sessions, where, limit)
            for row in reversed(rows):
                if seen.get(row.id) != row.last_message_at:
                    seen[row.id] = row.last_message_at
                    click.echo(thread_line(row, zone=zone))
            sys.stdout.flush()
            await asyncio.sleep(every)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return


@transcripts.command("show")
@click.argument("conversation_id")
@click.option("--workspace", "workspace_id", help="Look only in this workspace.")
@click.option("--raw", is_flag=True, help="Add each agent run's exact model input and output.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(conversation_id: str, workspace_id: str | None, raw: bool, as_json: bool) -> None:
    """One thread as a chat: texts with authors and delivery, tool calls, events, notes,
    hand-offs, claim-check corrections and each agent run."""
    settings = load_settings()
    conversation = read_db(
        settings, lambda sessions: _load_one(sessions, conversation_id, workspace_id, raw)
    )
    if as_json:
        click.echo(json.dumps(conversation.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_conversation(conversation, zone=settings.timezone, raw=raw)


async def resolve(sessions: SessionFactory, ref: str, workspace_id: str | None = None) -> str:
    """The whole id `ref` names, or a clean error saying why not."""
    async with sessions() as session:
        try:
            return await resolve_conversation_id(
                await session.connection(), ref, workspace_id=workspace_id
            )
        except AmbiguousId as exc:
            raise click.ClickException(
                f"{exc.prefix} starts more than one conversation: {', '.join(exc.matches)}"
                + (" …" if len(exc.matches) > 5 else "")
            ) from None
        except NoSuchId as exc:
            raise click.ClickException(str(exc)) from None


async def _load_one(
    sessions: SessionFactory, ref: str, workspace_id: str | None, raw: bool
) -> ConversationOut:
    whole = await resolve(sessions, ref, workspace_id)
    async with sessions() as session:
        found = await load_many(await session.connection(), [whole], raw=raw)
    return found[0]


@transcripts.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--workspace", "workspace_id", help="Only this workspace's texts.")
@click.option("--since", help="Texts since: 30m, 24h, 7d, 2w, a date or an ISO time.")
@click.option("--until", help="Texts before: the same forms as --since.")
@click.option("--limit", default=25, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search_command(
    words: tuple[str, ...],
    workspace_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Texts holding every word (the last may be the start of a word), newest first, with the
    words marked. Uses the full-text index: fast on millions of texts."""
    settings = load_settings()
    moment, zone = now(settings), settings.timezone
    text = " ".join(words)
    start = parse_moment(since, now=moment, zone=zone) if since else None
    end = parse_moment(until, now=moment, zone=zone, name="--until") if until else None

    async def query(sessions: SessionFactory) -> tuple[list[Any], float]:
        async with sessions() as session:
            conn = await session.connection()
            began = time.perf_counter()
            try:
                hits = await search_messages(
                    conn, text, workspace_id=workspace_id, since=start, until=end, limit=limit
                )
            except BadQuery as exc:
                raise click.BadParameter(str(exc), param_hint="WORDS") from None
            return hits, time.perf_counter() - began

    hits, seconds = read_db(settings, query)
    if as_json:
        click.echo(json.dumps([hit_json(h) for h in hits], indent=2, ensure_ascii=False))
        return
    print_hits(hits, zone=zone)
    if on_terminal():
        more = " (more with --limit)" if len(hits) == limit else ""
        click.echo(f"{len(hits)} texts in {seconds * 1000:.0f} ms{more}", err=True)


# Export


@transcripts.command("export")
@click.argument("conversation_ids", nargs=-1)
@thread_filters
@click.option(
    "--format",
    "kind",
    type=click.Choice(["jsonl", "csv", "html"]),
    default="jsonl",
    show_default=True,
    help="jsonl: a thread per line, whole; csv: a text per row; html: one page to read or print.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="The file to write (default: standard output).",
)
@click.option("--raw", is_flag=True, help="jsonl: add each run's exact model input and output.")
def export_command(
    conversation_ids: tuple[str, ...],
    kind: str,
    out_path: Path | None,
    raw: bool,
    **given: Any,
) -> None:
    """Export threads (those named, else every thread the filters match) to JSONL, CSV or one
    self-contained HTML file, streaming: memory stays flat for 100,000 threads."""
    settings = load_settings()
    where = build_filter(settings, **given)

    def export(out: TextIO) -> int:
        return read_db(
            settings,
            lambda sessions: _export(
                sessions, settings, conversation_ids, where, kind, out, raw=raw
            ),
        )

    if out_path is None:
        export(sys.stdout)
        return
    # Written beside, then moved over: a failed export leaves no half file behind.
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            written = export(out)
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"wrote {written:,} conversations to {out_path}", err=True)


async def _export(
    sessions: SessionFactory,
    settings: Settings,
    named: tuple[str, ...],
    where: ReviewFilter,
    kind: str,
    out: TextIO,
    *,
    raw: bool,
) -> int:
    if named:
        ids = [await resolve(sessions, ref, where.workspace_id) for ref in named]
        total = len(ids)
        pages = _named_pages(sessions, ids, raw)
    else:
        async with sessions() as session:
            total = await count_threads(await session.connection(), where)
        pages = _filtered_pages(sessions, where, raw)
    zone = settings.timezone
    written = 0
    with ExitStack() as stack:
        progress = _progress(total, stack)
        task = progress.add_task("exporting", total=total) if progress else None
        write, close = _writer(kind, out, zone, settings, where, named, stack)
        async for page in pages:
            for conversation in page:
                write(conversation)
            written += len(page)
            if progress is not None and task is not None:
                progress.update(task, completed=written)
        close()
    return written


def _progress(total: int, stack: ExitStack) -> Progress | None:
    """A bar on the terminal's standard error (never in the export itself)."""
    if not sys.stderr.isatty() or total < 2:
        return None
    return stack.enter_context(
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    )


async def _named_pages(
    sessions: SessionFactory, ids: list[str], raw: bool
) -> AsyncIterator[list[ConversationOut]]:
    for start in range(0, len(ids), EXPORT_PAGE):
        async with sessions() as session:
            yield await load_many(
                await session.connection(), ids[start : start + EXPORT_PAGE], raw=raw
            )


async def _filtered_pages(
    sessions: SessionFactory, where: ReviewFilter, raw: bool
) -> AsyncIterator[list[ConversationOut]]:
    """Page after page by keyset, each in a short read of its own (a long one would keep
    SQLite's log from being checkpointed while the service writes)."""
    after: tuple[datetime, str] | None = None
    while True:
        async with sessions() as session:
            conn = await session.connection()
            keys = await thread_keys(conn, replace(where, before=after), limit=EXPORT_PAGE)
            if not keys:
                return
            yield await load_many(conn, [k[0] for k in keys], raw=raw)
        after = (keys[-1][1], keys[-1][0])


CSV_COLUMNS = (
    "conversation_id",
    "workspace_id",
    "contact_phone",
    "contact_name",
    "message_id",
    "created_at",
    "local_time",
    "direction",
    "author",
    "status",
    "error_code",
    "segments",
    "cost_cents",
    "body",
    "media_urls",
)


def _writer(
    kind: str,
    out: TextIO,
    zone: str,
    settings: Settings,
    where: ReviewFilter,
    named: tuple[str, ...],
    stack: ExitStack,
) -> tuple[Callable[[ConversationOut], None], Callable[[], None]]:
    """How each thread is written, and how the file ends."""
    if kind == "jsonl":

        def line(conversation: ConversationOut) -> None:
            out.write(conversation.model_dump_json(exclude_none=False))
            out.write("\n")

        return line, out.flush
    if kind == "csv":
        rows = csv.writer(out)
        rows.writerow(CSV_COLUMNS)

        def texts(conversation: ConversationOut) -> None:
            contact = conversation.contact
            name = contact_name(contact) or ""
            for m in conversation.messages:
                rows.writerow(
                    (
                        conversation.id,
                        conversation.workspace_id,
                        contact.phone,
                        name,
                        m.id,
                        m.created_at.isoformat(),
                        local(m.created_at, zone, "%Y-%m-%d %H:%M:%S"),
                        m.direction,
                        author(m, contact),
                        m.status,
                        m.error_code or "",
                        m.segments,
                        "" if m.cost_cents is None else f"{m.cost_cents:.4f}",
                        m.body,
                        " ".join(m.media_urls),
                    )
                )

        return texts, out.flush
    page = stack.enter_context(
        HtmlExport(
            out,
            title="Conversations" if not named or len(named) > 1 else f"Conversation {named[0]}",
            subtitle=_described(where, named),
            zone=zone,
        )
    )
    return page.write, out.flush


def _described(where: ReviewFilter, named: tuple[str, ...]) -> str:
    if named:
        return ", ".join(named)
    parts = [
        f"{name} {value}"
        for name, value in (
            ("workspace", where.workspace_id),
            ("status", where.status),
            ("mode", where.mode),
            ("tag", where.tag),
            ("phone", where.phone or (f"…{where.phone_suffix}" if where.phone_suffix else None)),
            ("text", where.text),
            ("since", where.since.isoformat(timespec="minutes") if where.since else None),
            ("until", where.until.isoformat(timespec="minutes") if where.until else None),
        )
        if value
    ]
    if where.needs_person:
        parts.append("needing a person")
    if where.opted_out is not None:
        parts.append("opted out" if where.opted_out else "not opted out")
    return "; ".join(parts) or "every conversation"
