"""Exported threads as one self-contained HTML page that office staff read on screen or print.

The page is written thread by thread: `write` renders one conversation and forgets it, so an
export of any size never sits in memory. Inline CSS only, no scripts, and everything that came
from a customer, a person, the model or a tool is escaped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from types import TracebackType
from typing import IO, Any
from zoneinfo import ZoneInfo

from agent.schemas import AgentRunOut, ConversationOut, EventOut, MessageOut
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


class HtmlExport:
    """`with HtmlExport(out, title=…) as page: page.write(conversation)` writes the page's head
    on entering, one `<section>` per thread, and on leaving the number of threads and the end
    of the document."""

    def __init__(
        self,
        out: IO[str],
        *,
        title: str,
        subtitle: str = "",
        zone: str = "UTC",
        generated_at: datetime | None = None,
    ) -> None:
        ZoneInfo(zone)  # an unknown zone fails here, before a byte is written
        self._out = out
        self._title = title
        self._subtitle = subtitle
        self._zone = zone
        self._generated_at = generated_at or datetime.now(UTC)
        self.count = 0

    def __enter__(self) -> HtmlExport:
        self._out.write(
            _HEAD.format(
                title=escape(self._title),
                subtitle=escape(self._subtitle),
                generated=escape(local(self._generated_at, self._zone)),
                zone=escape(self._zone),
                css=_CSS,
            )
        )
        return self

    def write(self, conversation: ConversationOut) -> None:
        self._out.write(_thread(conversation, self._zone))
        self.count += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # An export that stopped part-way has no count at its end, so it does not pass for whole.
        if kind is None:
            threads = f"{self.count:,} thread{'' if self.count == 1 else 's'}"
            self._out.write(_FOOT.format(threads=threads))


def _thread(conversation: ConversationOut, zone: str) -> str:
    parts = [
        f'<section class="thread" id="{escape(conversation.id)}">',
        _thread_head(conversation, zone),
        '<ol class="chat">',
    ]
    day = ""
    for entry in timeline(conversation):
        if (today := local(entry.at, zone, "%A %Y-%m-%d")) != day:
            day = today
            parts.append(f'<li class="day">{escape(day)}</li>')
        if entry.message is not None:
            parts.append(_message(entry.message, conversation, zone))
        elif entry.run is not None:
            parts.append(_run(entry.run, zone))
        elif entry.event is not None and entry.kind == "note":
            parts.append(_note(entry.event, zone))
        elif entry.event is not None:
            parts.append(_event(entry.event, zone))
    parts.append("</ol></section>\n")
    return "".join(parts)


def _thread_head(conversation: ConversationOut, zone: str) -> str:
    contact = conversation.contact
    name = contact_name(contact)
    who = f"<h2>{escape(name or contact.phone)}</h2>"
    if name:
        who += f'<span class="phone">{escape(contact.phone)}</span>'
    if contact.opted_out:
        since = f" since {local(contact.opted_out_at, zone)}" if contact.opted_out_at else ""
        who += f'<span class="badge opted-out">OPTED OUT{escape(since)}</span>'
    mode = "a person answers" if conversation.mode == "human" else "the agent answers"
    facts = [("status", f"{escape(conversation.status)} · {escape(mode)}")]
    if conversation.handoff_reason:
        facts.append(
            ("hand-off", f'<span class="reason">{escape(conversation.handoff_reason)}</span>')
        )
    if contact.tags:
        facts.append(
            ("tags", " ".join(f'<span class="tag">{escape(t)}</span>' for t in contact.tags))
        )
    if (appointment := conversation.appointment) is not None:
        shown = [
            appointment.type or "appointment",
            local(appointment.start, zone),
            appointment.status,
        ]
        facts.append(("appointment", " · ".join(escape(s) for s in shown)))
    spent = totals(conversation)
    tokens = spent.prompt_tokens + spent.completion_tokens
    facts.append(("cost", f"{spent.cost_cents:.2f}¢ SMS · {tokens:,} model tokens"))
    if conversation.context:
        facts.append(("context", escape(conversation.context)))
    if conversation.summary:
        facts.append(("earlier lines", escape(conversation.summary)))
    rows = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in facts)
    return (
        f'<header class="thread-head"><div class="who">{who}</div>'
        f'<p class="conversation-id">conversation <code>{escape(conversation.id)}</code>'
        f" · {escape(conversation.provider)} {escape(conversation.sender_number)}</p>"
        f'<dl class="facts">{rows}</dl></header>'
    )


_AUTHOR_CLASSES = frozenset({"contact", "agent", "human", "system", "api"})


def _message(message: MessageOut, conversation: ConversationOut, zone: str) -> str:
    side = "inbound" if message.direction == "inbound" else "outbound"
    by = message.author if message.author in _AUTHOR_CLASSES else "other"
    classes = f"message {side} by-{by}"
    meta = [f'<span class="author">{escape(author(message, conversation.contact))}</span>']
    meta.append(_time(message.created_at, zone))
    status = escape(delivery(message))
    if message.error_code or message.status in ("failed", "undelivered"):
        classes += " failed"
        status = f'<span class="trouble">{status}</span>'
    meta.append(status)
    if message.error_message:
        meta.append(f'<span class="trouble">{escape(message.error_message)}</span>')
    if charged := cost(message):
        meta.append(escape(charged))
    extras = []
    if message.send_at is not None:
        when = _time(message.send_at, zone, "%Y-%m-%d %H:%M")
        extras.append(f'<p class="scheduled">scheduled for {when}</p>')
    if message.hidden:
        classes += " hidden"
        extras.append('<p class="flag">hidden from the inbox (it was sent)</p>')
    media = "".join(
        f"<li>{_link(url)}"
        + (f' <span class="kept">{escape(media_line(item))}</span>' if item else "")
        + "</li>"
        for url, item in media_of(message)
    )
    return (
        f'<li class="{classes}" data-kind="message" data-author="{escape(message.author)}"'
        f' data-direction="{escape(message.direction)}">'
        f'<div class="bubble"><p class="body">{escape(message.body)}</p>'
        + (f'<ul class="media">{media}</ul>' if media else "")
        + "</div>"
        + "".join(extras)
        + f'<p class="meta">{" · ".join(meta)}</p></li>'
    )


def _run(run: AgentRunOut, zone: str) -> str:
    facts = [f'<span class="label">agent run</span> {_time(run.started_at, zone)}']
    if run.model:
        facts.append(f"<code>{escape(run.model)}</code>")
    facts.append(f"{run.prompt_tokens:,} + {run.completion_tokens:,} tokens")
    facts.append(f"{run.latency_ms / 1000:.1f} s")
    facts.append(f'outcome <b class="outcome">{escape(run.outcome)}</b>')
    parts = [
        f'<li class="run" data-kind="agent-run" data-outcome="{escape(run.outcome)}">',
        f'<p class="run-head">{" · ".join(facts)}</p>',
    ]
    if run.error:
        parts.append(f'<p class="trouble">error: {escape(run.error)}</p>')
    parts += [_tool_call(call) for call in run.tool_calls]
    parts += [_correction(held) for held in run.corrections]
    parts.append("</li>")
    return "".join(parts)


def _tool_call(call: dict[str, Any]) -> str:
    name = escape(str(call.get("name") or "?"))
    failed = bool(call.get("error"))
    args = call.get("args")
    shown = args if isinstance(args, str) else _compact(args or {})
    result = call.get("result")
    flag = ' <span class="badge error">error</span>' if failed else ""
    return (
        f'<div class="tool{" failed" if failed else ""}" data-kind="tool-call" data-tool="{name}">'
        f'<p class="tool-name">tool <code>{name}</code>{flag}</p>'
        f'<pre class="args">{escape(shown)}</pre>'
        f'<pre class="result">→ {escape("no result" if result is None else str(result))}</pre>'
        "</div>"
    )


def _correction(held: dict[str, Any]) -> str:
    claims = ", ".join(str(c) for c in held.get("claims") or [])
    return (
        '<div class="correction" data-kind="correction">'
        f'<p><span class="label">claim check</span> unbacked: <b>{escape(claims)}</b>'
        f" → {escape(str(held.get('action') or '?'))}</p>"
        f'<p class="draft">{escape(str(held.get("reply") or ""))}</p></div>'
    )


_EVENT_LABELS = {
    "conversation.handoff": "handed to a person",
    "conversation.taken_over": "taken over by a person",
    "conversation.handed_back": "handed back to the agent",
}


def _event(event: EventOut, zone: str) -> str:
    handoff = event.type in HANDOFF_EVENTS
    label = _EVENT_LABELS.get(event.type)
    shown = [_time(event.created_at, zone)]
    if label:
        shown.append(f"<b>{escape(label)}</b>")
    if reason := event.data.get("reason"):
        shown.append(f'reason: <span class="reason">{escape(str(reason))}</span>')
    shown += [
        f"{escape(key)}: {escape(_text(value))}"
        for key, value in event.data.items()
        if key != "reason" and value is not None
    ]
    if event.revenue is not None:
        shown.append(f"revenue {event.revenue:,.2f}")
    shown.append(f'<code class="type">{escape(event.type)}</code>')
    return (
        f'<li class="event{" handoff" if handoff else ""}" data-kind="event"'
        f' data-type="{escape(event.type)}"><span>{" · ".join(shown)}</span></li>'
    )


def _note(event: EventOut, zone: str) -> str:
    by = event.data.get("author")
    signed = f"{escape(str(by))} · " if by else ""
    return (
        '<li class="note" data-kind="note"><div class="sticky">'
        '<p class="label">internal note — not sent</p>'
        f'<p class="body">{escape(str(event.data.get("text") or ""))}</p>'
        f'<p class="meta">{signed}{_time(event.created_at, zone)}</p></div></li>'
    )


def _time(moment: datetime, zone: str, pattern: str = "%H:%M") -> str:
    return f'<time datetime="{moment.isoformat()}">{escape(local(moment, zone, pattern))}</time>'


def _link(url: str) -> str:
    # Only web addresses become links: a `javascript:` URL stays harmless text.
    if url.startswith(("https://", "http://")):
        return f'<a href="{escape(url)}">{escape(url)}</a>'
    return escape(url)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _compact(value)


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="export">
<h1>{title}</h1>
<p class="subtitle">{subtitle}</p>
<p class="generated">generated {generated} · times in {zone}</p>
</header>
<main>
"""

_FOOT = """</main>
<footer class="export"><p>{threads}</p></footer>
</body>
</html>
"""

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #f4f5f7; color: #1f2328;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "DejaVu Sans", sans-serif; }
main, header.export, footer.export { max-width: 880px; margin: 0 auto; padding: 0 16px; }
header.export { padding-top: 24px; padding-bottom: 8px; }
header.export h1 { margin: 0; font-size: 22px; }
header.export p { margin: 2px 0; color: #57606a; }
footer.export { padding-top: 8px; padding-bottom: 32px; color: #57606a; text-align: center; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 12.5px; }
section.thread { background: #ffffff; border: 1px solid #d0d7de; border-radius: 10px;
  margin: 16px 0; padding: 16px 20px; }
.thread-head { border-bottom: 1px solid #d8dee4; padding-bottom: 10px; margin-bottom: 8px;
  break-inside: avoid; break-after: avoid; }
.who { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 12px; }
.who h2 { margin: 0; font-size: 19px; }
.phone { color: #57606a; }
.conversation-id { margin: 2px 0 8px; color: #57606a; font-size: 13px; }
.conversation-id code { user-select: all; color: #1f2328; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0;
  font-size: 13.5px; }
.facts div { display: contents; }
.facts dt { color: #57606a; }
.facts dd { margin: 0; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px;
  font-weight: 700; letter-spacing: .03em; }
.badge.opted-out { background: #ffebe9; color: #a40e26; border: 1px solid #ff8182; }
.badge.error { background: #ffebe9; color: #a40e26; }
.tag { display: inline-block; background: #eaeef2; border-radius: 10px; padding: 0 8px;
  font-size: 12.5px; }
.reason { font-weight: 600; color: #9a3412; }
.trouble { color: #b3261e; font-weight: 600; }
ol.chat { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column;
  gap: 6px; }
ol.chat > li { break-inside: avoid; }
li.day { align-self: center; color: #6e7781; font-size: 12px; margin: 8px 0 2px;
  text-transform: uppercase; letter-spacing: .04em; }
li.message { max-width: 74%; display: flex; flex-direction: column; }
li.message.inbound { align-self: flex-start; align-items: flex-start; }
li.message.outbound { align-self: flex-end; align-items: flex-end; }
.bubble { padding: 8px 12px; border-radius: 16px; border: 1px solid transparent; }
.inbound .bubble { background: #e9ecef; border-color: #dde1e5; border-bottom-left-radius: 4px; }
.outbound .bubble { background: #d6e9ff; border-color: #bcdcff; border-bottom-right-radius: 4px; }
.outbound.by-human .bubble { background: #d3f5dc; border-color: #b4e8c2; }
.outbound.by-system .bubble, .outbound.by-api .bubble, .outbound.by-other .bubble {
  background: #ece6fb; border-color: #dcd2f6; }
.message.failed .bubble { border: 1px dashed #cf222e; }
.message.hidden .bubble { border-style: dashed; border-color: #8c959f; }
.bubble .body { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.media { margin: 4px 0 0; padding-left: 18px; font-size: 13px; overflow-wrap: anywhere; }
ul.media .kept { display: block; color: #57606a; }
li.message .meta, li.message .scheduled, li.message .flag { margin: 2px 6px 0;
  font-size: 12px; color: #57606a; }
.meta .author { font-weight: 600; color: #1f2328; }
li.message .flag { font-style: italic; }
li.run { align-self: flex-end; width: 74%; border-left: 3px solid #8250df; background: #fbfaff;
  padding: 6px 10px; border-radius: 4px; font-size: 13px; }
.run-head { margin: 0; color: #57606a; }
.run p.trouble { margin: 2px 0; }
.label { font-weight: 700; color: #6639ba; text-transform: uppercase; font-size: 11px;
  letter-spacing: .05em; }
.tool { margin-top: 6px; background: #efe9ff; border: 1px solid #d8ccf8; border-radius: 6px;
  padding: 6px 10px; }
.tool.failed { background: #ffebe9; border-color: #ffb8b0; }
.tool-name { margin: 0 0 2px; font-weight: 600; }
.tool pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.tool pre.result { color: #3d444d; }
.correction { margin-top: 6px; background: #fff8c5; border: 1px solid #e9d46a;
  border-radius: 6px; padding: 6px 10px; }
.correction p { margin: 0; }
.correction .label { color: #7d4e00; }
.correction .draft { color: #57606a; font-style: italic; white-space: pre-wrap; }
li.event { align-self: center; max-width: 86%; text-align: center; font-size: 12.5px;
  color: #57606a; }
li.event code.type { color: #8c959f; font-size: 11px; }
li.event.handoff > span { display: inline-block; background: #fff1e5; border: 1px solid #ffc58b;
  color: #7c2d12; border-radius: 12px; padding: 3px 12px; }
li.note { align-self: center; width: 70%; }
.sticky { background: #fff3a8; border: 1px solid #e8d35a; border-radius: 2px;
  padding: 8px 12px; box-shadow: 0 2px 4px rgba(0, 0, 0, .12); }
.sticky .label { color: #7a5d00; }
.sticky .body { margin: 2px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.sticky .meta { margin: 0; font-size: 12px; color: #6b5a00; }
a { color: #0969da; }
@media (max-width: 640px) {
  li.message, li.run, li.note { max-width: 92%; width: auto; }
  section.thread { padding: 12px; }
}
@page { margin: 14mm; }
@media print {
  body { background: #ffffff; font-size: 10.5pt; }
  main, header.export, footer.export { max-width: none; padding: 0; }
  section.thread { border: none; border-top: 2px solid #57606a; border-radius: 0;
    padding: 10px 0; }
  .sticky { box-shadow: none; }
  a { color: inherit; }
}
"""
