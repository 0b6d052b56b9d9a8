"""The HTML export of threads: every line of a thread on the page, customer text shown as text,
thousands of threads written without holding them, and a real browser painting what we meant."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import struct
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from agent.schemas import (
    AgentRunOut,
    AppointmentOut,
    ContactOut,
    ConversationOut,
    EventOut,
    MessageOut,
)
from webhooks.review.html import HtmlExport

ZONE = "America/New_York"
MONDAY = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 09:00 in New York
SCRIPT = "<script>alert(1)</script>"


def _at(minutes: float) -> datetime:
    return MONDAY + timedelta(minutes=minutes)


def _contact(first: str | None, last: str | None, phone: str, **extra: Any) -> ContactOut:
    fields: dict[str, Any] = {
        "id": f"ct_{phone[-4:]}",
        "phone": phone,
        "first_name": first,
        "last_name": last,
        "email": None,
        "external_id": None,
        "tags": [],
        "opted_out": False,
        "opted_out_at": None,
    }
    return ContactOut(**(fields | extra))


def _text(sid: str, minutes: float, author: str, body: str, **extra: Any) -> MessageOut:
    inbound = author == "contact"
    fields: dict[str, Any] = {
        "id": sid,
        "direction": "inbound" if inbound else "outbound",
        "author": author,
        "body": body,
        "status": "received" if inbound else "delivered",
        "segments": 1,
        "encoding": "GSM-7",
        "cost_cents": 0.79,
        "error_code": None,
        "created_at": _at(minutes),
        "sent_at": None if inbound else _at(minutes),
        "delivered_at": None if inbound else _at(minutes + 0.1),
    }
    return MessageOut(**(fields | extra))


def _event(eid: str, minutes: float, type: str, **data: Any) -> EventOut:
    return EventOut(
        id=eid, type=type, data=data, revenue=None, agent_run_id=None, created_at=_at(minutes)
    )


def _run(rid: str, minutes: float, *calls: dict[str, Any], **extra: Any) -> AgentRunOut:
    fields: dict[str, Any] = {
        "id": rid,
        "model": "gpt-4o-mini",
        "outcome": "replied",
        "prompt_tokens": 1840,
        "completion_tokens": 62,
        "latency_ms": 1320,
        "tool_calls": list(calls),
        "error": None,
        "started_at": _at(minutes),
    }
    return AgentRunOut(**(fields | extra))


def _call(name: str, args: dict[str, Any], result: str, error: bool = False) -> dict[str, Any]:
    return {"name": name, "args": args, "result": result, "error": error}


def _appointment(aid: str, minutes: float, kind: str, status: str) -> AppointmentOut:
    return AppointmentOut(
        id=aid,
        external_id=None,
        start=_at(minutes),
        end=_at(minutes + 60),
        type=kind,
        description=None,
        status=status,
        requested_start=None,
    )


def _thread(
    cid: str,
    contact: ContactOut,
    messages: list[MessageOut],
    events: Sequence[EventOut] = (),
    runs: Sequence[AgentRunOut] = (),
    **extra: Any,
) -> ConversationOut:
    fields: dict[str, Any] = {
        "id": cid,
        "status": "open",
        "mode": "agent",
        "sender_number": "+15550001111",
        "provider": "twilio",
        "context": None,
        "handoff_reason": None,
        "created_at": messages[0].created_at,
        "last_message_at": messages[-1].created_at,
        "contact": contact,
        "appointment": None,
        "messages": messages,
        "events": list(events),
        "agent_runs": list(runs),
    }
    return ConversationOut(**(fields | extra))


def confirmation() -> ConversationOut:
    return _thread(
        "conv_01JQ7confirmation",
        _contact("Sarah", "Johnson", "+15552340001"),
        [
            _text(
                "msg_c1",
                0,
                "api",
                "Hi Sarah, this is Bright Smile Dental: a reminder of your cleaning tomorrow, "
                "Tue Mar 10 at 9:00 AM. Reply YES to confirm or tell us a better time.",
                segments=2,
                cost_cents=1.58,
            ),
            _text("msg_c2", 14, "contact", "Yes I'll be there, thanks!"),
            _text(
                "msg_c3", 14.05, "agent", "You're confirmed for Tuesday at 9:00 AM. See you then!"
            ),
        ],
        runs=[
            _run(
                "run_c1",
                14.02,
                _call(
                    "confirm_appointment",
                    {"appointment_id": "appt_1001"},
                    "Confirmed. Tell the customer their appointment on Tue Mar 10 9:00 AM is "
                    "confirmed.",
                ),
            )
        ],
        appointment=_appointment("appt_1001", 24 * 60, "cleaning", "confirmed"),
    )


def reschedule() -> ConversationOut:
    return _thread(
        "conv_01JQ7reschedule",
        _contact("James", "Carter", "+15552340002", tags=["prefers-afternoons"]),
        [
            _text("msg_r1", 30, "contact", "Can I move my crown fitting to Thursday afternoon?"),
            _text(
                "msg_r2",
                30.1,
                "agent",
                "Done! Your crown fitting is now Thursday, Mar 12 at 2:00 PM.",
            ),
        ],
        runs=[
            _run(
                "run_r1",
                30.05,
                _call(
                    "check_availability",
                    {"day": "2026-03-12", "after": "12:00"},
                    "Open times: Thu Mar 12 2:00 PM, 3:30 PM. Offer a few of these.",
                ),
                _call(
                    "reschedule_appointment",
                    {"new_start": "2026-03-12T14:00"},
                    "Moved. Tell the customer their appointment is now Thu Mar 12 2:00 PM.",
                ),
                prompt_tokens=3120,
                completion_tokens=88,
            )
        ],
        appointment=_appointment("appt_1002", 3 * 24 * 60 + 300, "crown fitting", "scheduled"),
    )


def handoff() -> ConversationOut:
    return _thread(
        "conv_01JQ7handoff",
        _contact("Dana", "Whitfield", "+15552340003", tags=["billing"]),
        [
            _text(
                "msg_h1", 60, "contact", "I was charged twice for my last visit. Can someone help?"
            ),
            _text(
                "msg_h2",
                60.1,
                "agent",
                "I'm sorry about that! I've asked our front desk to look into it; someone will "
                "text you shortly.",
                status="undelivered",
                error_code="30007",
                error_message="Carrier filtered the message",
                delivered_at=None,
            ),
            _text(
                "msg_h3",
                75,
                "human",
                "Hi Dana, this is Maria at Bright Smile. We refunded the duplicate charge; it "
                "shows in 3-5 business days.",
                author_name="Maria Lopez",
            ),
        ],
        events=[
            _event("ev_h1", 60.06, "conversation.handoff", reason="billing question"),
            _event("ev_h2", 70, "conversation.taken_over", by="Maria Lopez"),
            _event(
                "ev_h3",
                72,
                "conversation.note",
                text="Called her insurer: duplicate claim, refund approved.",
                author="Maria Lopez",
            ),
            _event("ev_h4", 75, "conversation.human_reply", message_id="msg_h3"),
        ],
        runs=[
            _run(
                "run_h1",
                60.05,
                _call("handoff_to_human", {"reason": "billing question"}, "Handed off."),
                outcome="handoff",
            )
        ],
        mode="human",
        handoff_reason="billing question",
    )


def opted_out() -> ConversationOut:
    """The rarer lines: a picture, a scheduled text, a hidden one, a withheld claim, opting out."""
    return _thread(
        "conv_01JQ7optout",
        _contact("Lena", None, "+15552340004", opted_out=True, opted_out_at=_at(200)),
        [
            _text("msg_o1", 120, "contact", "Here's my new insurance card", media_urls=[CARD]),
            _text("msg_o2", 121, "agent", "Thanks, Lena! You're booked for Friday at 10 AM."),
            _text("msg_o3", 122, "human", "test, please ignore", hidden=True),
            _text(
                "msg_o4",
                123,
                "system",
                "Reminder: your visit is on Friday at 10:00 AM.",
                status="scheduled",
                send_at=_at(2 * 24 * 60),
            ),
            _text("msg_o5", 200, "contact", "STOP"),
        ],
        runs=[
            _run(
                "run_o1",
                120.5,
                _call("book_appointment", {"start": "2026-03-13T10:00"}, "No such time", True),
                corrections=[
                    {
                        "claims": ["booked"],
                        "reply": "You're booked for Friday!",
                        "action": "withheld",
                    }
                ],
                error="the model stopped after 6 steps",
            )
        ],
        status="closed",
    )


CARD = "https://media.example.com/card.jpg?size=large&v=2"


def _page(*threads: ConversationOut) -> str:
    out = io.StringIO()
    moment = datetime(2026, 3, 9, 20, 30, tzinfo=UTC)
    with HtmlExport(
        out,
        title="Bright Smile Dental: conversations",
        subtitle="status open · 2026-03-09",
        zone=ZONE,
        generated_at=moment,
    ) as page:
        for thread in threads:
            page.write(thread)
    return out.getvalue()


class _Structure(HTMLParser):
    """Checks that every element is closed in order and no id is used twice."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.ids: list[str] = []
        self.problems: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.ids += [value or "" for name, value in attrs if name == "id"]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()


def test_customer_text_is_shown_as_text_never_as_markup() -> None:
    sly = _thread(
        "conv_sly",
        _contact('<img src=x onerror="alert(2)">', None, "+15552349999", tags=[SCRIPT]),
        [
            _text("msg_s1", 0, "contact", SCRIPT, media_urls=["javascript:alert(3)"]),
            _text("msg_s2", 1, "agent", "ok", error_message=SCRIPT, status="failed"),
        ],
        events=[_event("ev_s1", 2, "conversation.note", text=SCRIPT, author=SCRIPT)],
        runs=[_run("run_s1", 0.5, _call("tag_contact", {"tag": "</pre>" + SCRIPT}, SCRIPT))],
        handoff_reason=SCRIPT,
    )

    page = _page(sly)

    parsed = _Structure()
    parsed.feed(page)
    assert parsed.scripts == 0
    assert "<img" not in page
    assert 'href="javascript:' not in page
    assert page.count(escape(SCRIPT)) >= 6
    assert escape('<img src=x onerror="alert(2)">') in page


def test_every_line_of_a_thread_is_on_the_page() -> None:
    threads = [confirmation(), reschedule(), handoff()]

    page = _page(*threads)

    for thread in threads:
        assert f'<section class="thread" id="{thread.id}">' in page
        assert f"<code>{thread.id}</code>" in page
        for message in thread.messages:
            assert escape(message.body) in page
            assert f'data-author="{message.author}" data-direction="{message.direction}"' in page
        for run in thread.agent_runs:
            for call in run.tool_calls:
                assert f'data-tool="{call["name"]}"' in page
                assert escape(json.dumps(call["args"], separators=(",", ":"))) in page
                assert escape(call["result"]) in page
        for event in thread.events:
            if event.type == "conversation.note":
                assert escape(event.data["text"]) in page
            elif event.type != "conversation.human_reply":  # shown as the person's message
                assert f'<code class="type">{event.type}</code>' in page
    for label in ("Sarah Johnson", "James Carter", "Dana Whitfield", "Maria Lopez", "agent", "api"):
        assert f'<span class="author">{label}</span>' in page
    assert "internal note — not sent" in page
    assert escape("Called her insurer: duplicate claim, refund approved.") in page
    assert "undelivered 30007" in page
    assert "Carrier filtered the message" in page
    assert "cleaning · 2026-03-10 09:00 · confirmed" in page
    assert "3.16¢ SMS · 1,902 model tokens" in page  # Sarah: 1.58 + 0.79 + 0.79, one run
    assert "billing question" in page
    assert "prefers-afternoons" in page
    # Maria's reply at 14:15 UTC, shown in New York time.
    assert '<time datetime="2026-03-09T14:15:00+00:00">10:15</time>' in page


def test_the_rarer_lines_are_marked_for_what_they_are() -> None:
    page = _page(opted_out())

    assert "OPTED OUT since 2026-03-09 12:20" in page
    assert f'<a href="{escape(CARD)}">{escape(CARD)}</a>' in page
    assert "hidden from the inbox (it was sent)" in page
    assert (
        'scheduled for <time datetime="2026-03-11T13:00:00+00:00">2026-03-11 09:00</time>' in page
    )
    assert '<span class="author">system</span>' in page
    assert '<span class="author">person</span>' in page  # a person who left no name
    assert 'data-tool="book_appointment"' in page
    assert '<span class="badge error">error</span>' in page
    assert "unbacked: <b>booked</b> → withheld" in page
    assert escape("You're booked for Friday!") in page
    assert "error: the model stopped after 6 steps" in page


def test_the_page_is_one_well_formed_document_with_its_header_and_count() -> None:
    page = _page(confirmation(), reschedule(), handoff(), opted_out())

    parsed = _Structure()
    parsed.feed(page)
    assert parsed.problems == []
    assert parsed.open == []
    assert len(parsed.ids) == len(set(parsed.ids))
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "<title>Bright Smile Dental: conversations</title>" in page
    assert "status open · 2026-03-09" in page
    assert "generated 2026-03-09 16:30 · times in America/New_York" in page
    assert "<p>4 threads</p>" in page
    assert "http" not in page.split("<main>")[0]  # nothing is fetched from elsewhere
    assert "<p>1 thread</p>" in _page(handoff())


def test_an_export_that_fails_part_way_has_no_count_at_its_end() -> None:
    out = io.StringIO()

    def export() -> None:
        with HtmlExport(out, title="t", zone=ZONE) as page:
            page.write(confirmation())
            raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        export()

    assert "conv_01JQ7confirmation" in out.getvalue()
    assert "thread</p>" not in out.getvalue()


def _small_threads(count: int) -> Iterator[ConversationOut]:
    for n in range(count):
        yield _thread(
            f"conv_{n:06d}",
            _contact("Pat", f"Lee{n}", f"+1555{n:07d}"),
            [
                _text(f"m{n}a", n, "api", "Reminder: your visit is tomorrow at 9:00 AM."),
                _text(f"m{n}b", n + 1, "contact", "See you then"),
            ],
            runs=[_run(f"r{n}", n + 0.5, _call("confirm_appointment", {}, "Confirmed."))],
        )


def test_thousands_of_threads_are_written_without_holding_them(tmp_path: Path) -> None:
    path = tmp_path / "export.html"

    with path.open("w", encoding="utf-8") as out:
        tracemalloc.start()
        try:
            with HtmlExport(out, title="All threads", zone=ZONE) as page:
                for thread in _small_threads(2000):
                    page.write(thread)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    written = path.read_text(encoding="utf-8")
    assert written.count('<section class="thread"') == 2000
    assert written.rstrip().endswith("</html>")
    assert "<p>2,000 threads</p>" in written


# In a real browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# The colours the stylesheet paints (RGB): a customer's bubble, the agent's, a tool call.
INBOUND = (0xE9, 0xEC, 0xEF)
AGENT = (0xD6, 0xE9, 0xFF)
TOOL = (0xEF, 0xE9, 0xFF)
NOTE = (0xFF, 0xF3, 0xA8)

# Where the element is, and whether a reader can see it: laid out, not hidden by style (its own
# or an ancestor's), and on top at its centre once scrolled to.
_SEEN = """
(selector, text) => {
  const el = [...document.querySelectorAll(selector)].find(e => e.textContent.includes(text));
  if (!el) return null;
  el.scrollIntoView({block: "center"});
  const box = el.getBoundingClientRect();
  let shown = true;
  for (let up = el; up; up = up.parentElement) {
    const style = getComputedStyle(up);
    shown &&= style.display !== "none" && style.visibility === "visible"
      && parseFloat(style.opacity) > 0.9;
  }
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {
    width: box.width, height: box.height, shown: shown, onTop: !!hit && el.contains(hit),
    x: box.left + scrollX, y: box.top + scrollY,
  };
}
"""


class _DevTools:
    """Just enough of the Chrome DevTools Protocol: numbered calls, and waiting for an event."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._sent = 0
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._sent += 1
        asked = self._sent
        await self._socket.send_json({"id": asked, "method": method, "params": params})
        while True:
            answer = await self._socket.receive_json()
            if answer.get("id") != asked:
                self._events.append(answer)
                continue
            assert "error" not in answer, f"{method}: {answer['error']}"
            result: dict[str, Any] = answer["result"]
            return result

    async def event(self, method: str) -> None:
        while not any(e.get("method") == method for e in self._events):
            self._events.append(await self._socket.receive_json())

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def seen(self, selector: str, text: str) -> dict[str, Any]:
        where = await self.evaluate(f"({_SEEN})({json.dumps(selector)}, {json.dumps(text)})")
        assert where is not None, f"no {selector} holding {text!r}"
        assert where["width"] > 0, f"{selector} {text!r} has no width"
        assert where["height"] > 0, f"{selector} {text!r} has no height"
        assert where["shown"], f"{selector} {text!r} is styled out of sight"
        assert where["onTop"], f"{selector} {text!r} is covered by something else"
        return dict(where)


async def _port(profile: Path, browser: asyncio.subprocess.Process) -> int:
    announced = profile / "DevToolsActivePort"
    for _ in range(200):
        # Two lines (the port, then the browser's path) once it is fully written.
        if announced.exists() and len(lines := announced.read_text().split()) >= 2:
            return int(lines[0])
        assert browser.returncode is None, f"chromium exited with {browser.returncode}"
        await asyncio.sleep(0.1)
    raise AssertionError("chromium never opened its DevTools port")


def _painted(shot: Image.Image, where: dict[str, Any]) -> tuple[int, ...]:
    """The colour covering most of an element's box (its background, between the glyphs)."""
    inside = (
        round(where["x"]) + 3,
        round(where["y"]) + 3,
        round(where["x"] + where["width"]) - 3,
        round(where["y"] + where["height"]) - 3,
    )
    colours = shot.crop(inside).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours
    _, most = max(colours)
    assert isinstance(most, tuple)
    return most


def _close_to(painted: tuple[int, ...], wanted: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 3 for a, b in zip(painted, wanted, strict=True))


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian's `chromium`; .ci/run installs it)"
)
async def test_a_browser_paints_the_threads_as_a_reader_sees_them(tmp_path: Path) -> None:
    threads = [confirmation(), reschedule(), handoff()]
    export = tmp_path / "export.html"
    export.write_text(_page(*threads), encoding="utf-8")
    profile = tmp_path / "profile"
    assert CHROMIUM is not None
    browser = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        # Its own process group, so its renderers end with it.
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as http:
            port = await _port(profile, browser)
            async with http.get(f"http://127.0.0.1:{port}/json") as listing:
                targets = await listing.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_url, max_msg_size=0) as socket:
                tools = _DevTools(socket)
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=export.as_uri())
                await tools.event("Page.loadEventFired")
                await _check_what_a_reader_sees(tools, threads, tmp_path)
    finally:
        if browser.returncode is None:
            os.killpg(browser.pid, signal.SIGKILL)
        await browser.wait()


async def _check_what_a_reader_sees(
    tools: _DevTools, threads: list[ConversationOut], tmp_path: Path
) -> None:
    assert await tools.evaluate("document.scripts.length") == 0
    bubbles: dict[str, dict[str, Any]] = {}
    for thread in threads:
        for message in thread.messages:
            # A page search for the first 40 characters finds the whole bubble.
            bubbles[message.id] = await tools.seen(
                '[data-kind="message"] .bubble', message.body[:40]
            )
    for label in ("Sarah Johnson", "agent", "api", "Dana Whitfield", "Maria Lopez"):
        await tools.seen('[data-kind="message"] .author', label)
    tool_blocks = {
        name: await tools.seen('[data-kind="tool-call"]', name)
        for name in ("confirm_appointment", "check_availability", "reschedule_appointment")
    }
    await tools.seen('[data-kind="tool-call"] .args', '{"new_start":"2026-03-12T14:00"}')
    note = await tools.seen('[data-kind="note"] .sticky', "internal note — not sent")
    await tools.seen('[data-kind="note"]', "refund approved")
    await tools.seen('[data-kind="event"]', "billing question")
    await tools.seen('[data-kind="message"] .meta', "undelivered 30007")
    for thread in threads:
        await tools.seen(f'[id="{thread.id}"] .conversation-id code', thread.id)

    width, height = await tools.evaluate(
        "window.scrollTo(0, 0),"
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = await tools.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    (tmp_path / "export.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (width, height) == (1280, height)
    assert height > 1000  # three threads, not a blank page

    with Image.open(io.BytesIO(png)) as image:
        painted = image.convert("RGB")
    customer = _painted(painted, bubbles["msg_c2"])
    assert _close_to(customer, INBOUND), customer
    agent = _painted(painted, bubbles["msg_c3"])
    assert _close_to(agent, AGENT), agent
    for name, block in tool_blocks.items():
        assert _close_to(_painted(painted, block), TOOL), name
    assert _close_to(_painted(painted, note), NOTE)
