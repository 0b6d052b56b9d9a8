"""Transcripts for people: a table of threads, and one thread as a timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.evals.report import TrialResult, summary
from agent.schemas import ConversationListItem, ConversationOut

_DIRECTION = {"inbound": "←", "outbound": "→"}


def _at(moment: datetime | None, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def render_list(items: Sequence[ConversationListItem], *, zone: str) -> None:
    console = Console()
    if not items:
        console.print("No conversations yet.")
        return
    table = Table("conversation", "contact", "phone", "status", "mode", "messages", "last activity")
    for item in items:
        table.add_row(
            item.id,
            item.contact_name or "-",
            item.contact_phone,
            item.status,
            item.mode,
            str(item.message_count),
            _at(item.last_message_at, zone),
        )
    console.print(table)


def render_conversation(conversation: ConversationOut, *, zone: str) -> None:
    console = Console()
    contact = conversation.contact
    name = " ".join(n for n in (contact.first_name, contact.last_name) if n) or "unknown"
    console.print(Text(f"{conversation.id}", style="bold"))
    console.print(
        f"contact: {name} {contact.phone}"
        + (f"  tags: {', '.join(contact.tags)}" if contact.tags else "")
        + ("  [red]OPTED OUT[/red]" if contact.opted_out else "")
    )
    console.print(
        f"status: {conversation.status}  mode: {conversation.mode}"
        + (f"  handoff: {conversation.handoff_reason}" if conversation.handoff_reason else "")
    )
    if appointment := conversation.appointment:
        console.print(
            f"appointment: {appointment.type or '-'} {_at(appointment.start, zone)} "
            f"status: {appointment.status}"
        )
    if conversation.context:
        console.print(f"context: {conversation.context}")
    if conversation.summary:
        console.print(f"summary of earlier lines: {conversation.summary}")
    cost = sum(m.cost_cents or 0 for m in conversation.messages)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in conversation.agent_runs)
    console.print(f"cost: {cost:.2f}¢ SMS, {tokens} model tokens\n")

    timeline: list[tuple[datetime, int, Text]] = []
    for message in conversation.messages:
        line = Text(f"{_at(message.created_at, zone)} {_DIRECTION[message.direction]} ")
        line.append(f"[{message.author}] ", style="dim")
        line.append(message.body, style="bold" if message.direction == "inbound" else "")
        if message.direction == "outbound":
            detail = f"  ({message.status}, {message.segments} seg"
            detail += f", error {message.error_code})" if message.error_code else ")"
            line.append(detail, style="red" if message.error_code else "dim")
        timeline.append((message.created_at, 0, line))
    for event in conversation.events:
        line = Text(f"{_at(event.created_at, zone)} • {event.type} ", style="cyan")
        if event.data:
            line.append(" ".join(f"{k}={v}" for k, v in event.data.items() if v is not None))
        if event.revenue is not None:
            line.append(f" revenue={event.revenue:.2f}")
        timeline.append((event.created_at, 1, line))
    for run in conversation.agent_runs:
        line = Text(f"{_at(run.started_at, zone)} ⚙ run {run.outcome}", style="magenta")
        if run.model:
            line.append(
                f" model={run.model} tokens={run.prompt_tokens}+{run.completion_tokens}"
                f" {run.latency_ms}ms"
            )
        for call in run.tool_calls:
            line.append(f"\n    tool {call.get('name')}({call.get('args')}) → {call.get('result')}")
        for held in run.corrections:
            claimed = ", ".join(held.get("claims", []))
            line.append(
                f"\n    claim check ({claimed}): {held.get('reply')!r} → {held.get('action')}",
                style="yellow",
            )
        if run.error:
            line.append(f" error={run.error}", style="red")
        timeline.append((run.started_at, 2, line))
    for _, _, line in sorted(timeline, key=lambda entry: (entry[0], entry[1])):
        console.print(line)


def render_eval(results: Sequence[TrialResult], trials: int) -> None:
    """One row per scenario (passes of its trials, and why the first failing one failed), then
    pass^1..pass^k."""
    console = Console()
    table = Table("scenario", "passed", "safe", "first problem", expand=False)
    by_scenario: dict[str, list[TrialResult]] = {}
    for result in results:
        by_scenario.setdefault(result.scenario, []).append(result)
    for scenario, runs in by_scenario.items():
        passed = sum(r.passed for r in runs)
        safe = sum(r.safe for r in runs)
        problem = next((p for r in runs for p in (*r.unsafe, *r.failures)), "")
        table.add_row(
            scenario,
            Text(f"{passed}/{len(runs)}", style="green" if passed == len(runs) else "yellow"),
            Text(f"{safe}/{len(runs)}", style="green" if safe == len(runs) else "bold red"),
            problem,
        )
    console.print(table)
    totals = summary(results, trials)
    hats = "  ".join(f"pass^{k} {v:.3f}" for k, v in totals["pass_hat"].items())
    console.print(
        f"{hats}  safe {totals['safe_rate']:.3f} ({totals['unsafe_trials']} unsafe trials)  "
        f"corrections {totals['corrections']}  tokens {totals['prompt_tokens']}+"
        f"{totals['completion_tokens']}  {totals['seconds']}s"
    )
