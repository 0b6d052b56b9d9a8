"""Threads on a terminal (rich: colours, columns that fit its width) or piped (plain lines for
grep, awk and cut: the id first, nothing cut short, no colour)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.schemas import AgentRunOut, ConversationOut, EventOut, MessageOut
from storage.review import MARK_END, MARK_START, SearchHit, ThreadRow
from webhooks.review.timeline import (
    HANDOFF_EVENTS,
    author,
    contact_name,
    cost,
    delivery,
    local,
    media_line,
    media_of,
    timeline,
    totals,
)


def on_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _state(row: ThreadRow) -> Text:
    if row.needs_person:
        return Text("needs person", style="bold red")
    if row.opted_out:
        return Text("opted out", style="yellow")
    style = {"closed": "dim", "pending": "red"}.get(
        row.status, "green" if row.mode == "agent" else "cyan"
    )
    return Text(f"{row.status}·{row.mode}", style=style)


def thread_table(rows: Sequence[ThreadRow], *, zone: str, width: int) -> Table:
    """The list, with as many columns as `width` holds; the id is never cut."""
    wide, wider, widest = width >= 100, width >= 120, width >= 150
    # Past 120 columns the newest text takes what the others leave, cut short with an ellipsis.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=wider, header_style="bold")
    table.add_column("conversation", no_wrap=True, min_width=31)
    table.add_column("last activity", no_wrap=True, min_width=12)
    table.add_column("state", no_wrap=True, min_width=12)
    table.add_column("phone", no_wrap=True, min_width=12)
    if wide:
        table.add_column("contact", no_wrap=True, min_width=10, max_width=20, overflow="ellipsis")
    if widest:
        table.add_column("tags", no_wrap=True, min_width=4, max_width=16, overflow="ellipsis")
    if wider:
        table.add_column("msgs", justify="right", no_wrap=True, min_width=4)
        table.add_column("last text", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        cells: list[Any] = [
            Text(row.id, style="bold"),
            local(row.last_message_at, zone, "%b %d %H:%M"),
            _state(row),
            row.contact_phone,
        ]
        if wide:
            cells.append(row.contact_name or "-")
        if widest:
            cells.append(", ".join(row.tags))
        if wider:
            arrow = {"inbound": "← ", "outbound": "→ "}.get(row.last_direction or "", "")
            cells += [str(row.message_count), arrow + _one_line(row.last_text)]
        table.add_row(*cells)
    return table


def print_threads(rows: Sequence[ThreadRow], *, zone: str) -> None:
    if on_terminal():
        out = console()
        if not rows:
            out.print("No conversations match.")
            return
        out.print(thread_table(rows, zone=zone, width=out.width))
        return
    for row in rows:
        print(thread_line(row, zone=zone), flush=False)


def thread_line(row: ThreadRow, *, zone: str) -> str:
    """One thread on one line: id, local time, status, mode, flag, phone, name, count, tags,
    then the newest text (the only field with spaces in it, so it goes last)."""
    flag = "needs-person" if row.needs_person else ("opted-out" if row.opted_out else "-")
    name = (row.contact_name or "-").replace(" ", "_")
    return "  ".join(
        [
            row.id,
            local(row.last_message_at, zone, "%Y-%m-%dT%H:%M"),
            f"{row.status:7}",
            f"{row.mode:5}",
            f"{flag:12}",
            f"{row.contact_phone:15}",
            f"{name:20}",
            f"{row.message_count:4d}",
            ",".join(row.tags) or "-",
            f"{'<' if row.last_direction == 'inbound' else '>'} {_one_line(row.last_text)}",
        ]
    )


def thread_json(row: ThreadRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "workspace_id": row.workspace_id,
        "status": row.status,
        "mode": row.mode,
        "needs_person": row.needs_person,
        "handoff_reason": row.handoff_reason,
        "contact_name": row.contact_name,
        "contact_phone": row.contact_phone,
        "tags": row.tags,
        "opted_out": row.opted_out,
        "message_count": row.message_count,
        "last_message_at": row.last_message_at.isoformat(),
        "last_direction": row.last_direction,
        "last_text": row.last_text,
    }


# One thread, as a chat


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _header(conversation: ConversationOut, zone: str) -> list[tuple[str, str]]:
    contact = conversation.contact
    lines = [
        ("conversation", conversation.id),
        (
            "contact",
            f"{contact_name(contact) or 'unknown'}  {contact.phone}"
            + ("  OPTED OUT" if contact.opted_out else ""),
        ),
        (
            "state",
            f"{conversation.status}, {conversation.mode}"
            + (
                f" (hand-off: {conversation.handoff_reason})" if conversation.handoff_reason else ""
            ),
        ),
        ("our number", f"{conversation.sender_number} via {conversation.provider}"),
    ]
    if contact.tags:
        lines.append(("tags", ", ".join(contact.tags)))
    if appointment := conversation.appointment:
        lines.append(
            (
                "appointment",
                f"{appointment.type or 'visit'} {local(appointment.start, zone)} "
                f"({appointment.status})",
            )
        )
    if conversation.context:
        lines.append(("context", _one_line(conversation.context)))
    if conversation.summary:
        lines.append(("summary", _one_line(conversation.summary)))
    spent = totals(conversation)
    lines.append(
        (
            "totals",
            f"{spent.texts} texts, {spent.segments} segments, {spent.cost_cents:.2f}¢ SMS; "
            f"{spent.runs} agent runs, {spent.prompt_tokens:,}+{spent.completion_tokens:,} tokens",
        )
    )
    return lines


def _message(message: MessageOut, conversation: ConversationOut) -> tuple[str, str, str, list[str]]:
    """(marker, who, body, details) of one text."""
    inbound = message.direction == "inbound"
    marker = "←" if inbound else "→"
    details = [] if inbound else [delivery(message)]
    if spent := cost(message):
        details.append(spent)
    if message.error_message:
        details.append(message.error_message)
    if message.send_at and message.status == "scheduled":
        details.append(f"goes out {message.send_at.isoformat(timespec='minutes')}")
    if message.hidden:
        details.append("hidden from the inbox")
    extra = []
    for url, item in media_of(message):
        if item is None:
            extra.append(f"media: {url}")
        else:
            # Where a file came from matters when it could not be kept.
            source = "" if item.status == "stored" else f" ({url})"
            extra.append(f"media: {media_line(item)}{source}")
    return marker, author(message, conversation.contact), message.body, ["; ".join(details), *extra]


def _event(event: EventOut) -> tuple[str, str]:
    data = {k: v for k, v in event.data.items() if v is not None}
    if event.type == "conversation.note":
        return "✎", f"note by {data.get('author') or 'someone'} (not sent): {data.get('text', '')}"
    shown = " ".join(f"{k}={v}" for k, v in data.items())
    if event.revenue is not None:
        shown += f" revenue={event.revenue:.2f}"
    return "•", f"{event.type} {shown}".strip()


def _run(run: AgentRunOut, *, raw: bool) -> tuple[str, list[str]]:
    head = f"agent run: {run.outcome}"
    if run.model:
        head += (
            f" · {run.model} · {run.prompt_tokens:,}+{run.completion_tokens:,} tokens"
            f" · {run.latency_ms:,} ms"
        )
    lines = []
    for call in run.tool_calls:
        result = call.get("result")
        failed = " (error)" if call.get("error") else ""
        lines.append(
            f"tool {call.get('name')}({_compact(call.get('args'))}){failed}"
            + (f" → {result}" if result is not None else "")
        )
    for held in run.corrections:
        claimed = ", ".join(held.get("claims", []))
        lines.append(
            f"claim check ({claimed}): {_compact(held.get('reply'))} → {held.get('action')}"
        )
    if run.error:
        lines.append(f"error: {run.error}")
    if raw:
        for number, call in enumerate(run.exchange or [], start=1):
            lines.append(f"model call {number} input:")
            lines += [f"  {_said(m)}" for m in call.get("input", [])]
            lines.append(f"model call {number} output:")
            lines += [f"  {_said(m)}" for m in call.get("output", [])]
        if not run.exchange and run.model:
            lines.append("(the model's input and output were not kept for this run)")
    return head, lines


def _said(message: dict[str, Any]) -> str:
    text = f"[{message.get('role')}] {message.get('content')}"
    if message.get("tool_calls"):
        text += f" tool_calls={_compact(message['tool_calls'])}"
    if message.get("tool_call_id"):
        text += f" (answers {message['tool_call_id']})"
    return text


def print_conversation(conversation: ConversationOut, *, zone: str, raw: bool = False) -> None:
    if on_terminal():
        _rich_conversation(conversation, zone=zone, raw=raw)
    else:
        for line in plain_conversation(conversation, zone=zone, raw=raw):
            print(line)


def plain_conversation(conversation: ConversationOut, *, zone: str, raw: bool) -> Iterable[str]:
    for key, value in _header(conversation, zone):
        yield f"{key + ':':13} {value}"
    yield ""
    for entry in timeline(conversation):
        at = local(entry.at, zone, "%Y-%m-%d %H:%M:%S")
        if entry.message is not None:
            marker, who, body, details = _message(entry.message, conversation)
            yield f"{at}  {marker} {who}: {_one_line(body)}"
            yield from (f"{' ' * 22}{d}" for d in details if d)
        elif entry.event is not None:
            marker, text = _event(entry.event)
            yield f"{at}  {marker} {text}"
        elif entry.run is not None:
            head, lines = _run(entry.run, raw=raw)
            yield f"{at}  ⚙ {head}"
            yield from (f"{' ' * 22}{line}" for line in lines)


def _rich_conversation(conversation: ConversationOut, *, zone: str, raw: bool) -> None:
    out = console()
    header = Table.grid(padding=(0, 2))
    header.add_column(style="dim", no_wrap=True)
    header.add_column()
    for key, value in _header(conversation, zone):
        header.add_row(key, Text(value, style="bold") if key == "conversation" else value)
    out.print(header)
    out.print()
    chat = Table.grid(padding=(0, 1))
    compact = out.width < 100
    chat.add_column(no_wrap=True, style="dim")  # time
    chat.add_column(no_wrap=True)  # marker
    chat.add_column(ratio=1)  # what happened
    today = None
    for entry in timeline(conversation):
        day = local(entry.at, zone, "%a %b %d")
        if day != today:
            today = day
            chat.add_row("", "", Text(day, style="bold underline"))
        at = local(entry.at, zone, "%H:%M" if compact else "%H:%M:%S")
        if entry.message is not None:
            marker, who, body, details = _message(entry.message, conversation)
            inbound = entry.message.direction == "inbound"
            text = Text()
            text.append(f"{who}: ", style="bold cyan" if inbound else "bold green")
            text.append(body, style="" if not entry.message.hidden else "dim strike")
            failed = entry.message.error_code is not None or entry.message.status == "failed"
            for detail in details:
                if detail:
                    text.append(f"\n{detail}", style="red" if failed else "dim")
            chat.add_row(at, Text(marker, style="cyan" if inbound else "green"), text)
        elif entry.event is not None:
            marker, said = _event(entry.event)
            style = (
                "bold yellow"
                if entry.event.type in HANDOFF_EVENTS
                else ("black on yellow" if marker == "✎" else "blue")
            )
            chat.add_row(at, Text(marker, style=style), Text(said, style=style))
        elif entry.run is not None:
            head, lines = _run(entry.run, raw=raw)
            text = Text(head, style="magenta")
            for line in lines:
                style = (
                    "red"
                    if line.startswith("error")
                    else ("yellow" if line.startswith("claim") else "")
                )
                text.append("\n  " + line, style=style)
            chat.add_row(at, Text("⚙", style="magenta"), text)
    out.print(chat)


# Search


def print_hits(hits: Sequence[SearchHit], *, zone: str) -> None:
    if on_terminal():
        out = console()
        if not hits:
            out.print("No message matches.")
            return
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
        table.add_column("conversation", no_wrap=True, min_width=31)
        table.add_column("when", no_wrap=True)
        if out.width >= 100:
            table.add_column("phone", no_wrap=True)
        table.add_column("text", ratio=1)
        for hit in hits:
            cells: list[Any] = [hit.conversation_id, local(hit.created_at, zone, "%b %d %H:%M")]
            if out.width >= 100:
                cells.append(hit.contact_phone)
            cells.append(_marked(hit))
            table.add_row(*cells)
        out.print(table)
        return
    for hit in hits:
        snippet = _one_line(hit.snippet).replace(MARK_START, "[").replace(MARK_END, "]")
        arrow = "<" if hit.direction == "inbound" else ">"
        print(
            f"{hit.conversation_id}  {local(hit.created_at, zone, '%Y-%m-%dT%H:%M')}  "
            f"{hit.message_id}  {hit.contact_phone:15}  {arrow} {snippet}"
        )


def _marked(hit: SearchHit) -> Text:
    text = Text("← " if hit.direction == "inbound" else "→ ", style="dim")
    rest = _one_line(hit.snippet)
    while MARK_START in rest:
        before, _, after = rest.partition(MARK_START)
        found, _, rest = after.partition(MARK_END)
        text.append(before)
        text.append(found, style="bold yellow")
    text.append(rest)
    return text


def hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "message_id": hit.message_id,
        "conversation_id": hit.conversation_id,
        "workspace_id": hit.workspace_id,
        "direction": hit.direction,
        "author": hit.author,
        "created_at": hit.created_at.isoformat(),
        "contact_phone": hit.contact_phone,
        "contact_name": hit.contact_name,
        "snippet": hit.snippet.replace(MARK_START, "").replace(MARK_END, ""),
        "matched": [part.partition(MARK_END)[0] for part in hit.snippet.split(MARK_START)[1:]],
    }
