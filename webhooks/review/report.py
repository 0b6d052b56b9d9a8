"""`smsagent report`: how the agent is doing over a period, for people (a terminal), scripts
(plain lines when piped, or JSON) and slides (a PNG chart of the days)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from storage.engine import SessionFactory
from storage.report import Report, build_report, workspace_exists
from storage.types import utcnow
from webhooks.review.db import load_settings, read_db
from webhooks.review.when import parse_moment

# Wide terminals get the panels side by side and a bar per day.
_WIDE = 120
_DAILY = (
    ("received", "inbound"),
    ("sent", "outbound"),
    ("confirmed", "confirmations"),
    ("moved", "moves"),
    ("canceled", "cancellations"),
    ("hand-offs", "handoffs"),
    ("opt-outs", "opt_outs"),
)


@click.command("report")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Start: a span back from now (24h, 7d, 2w), a date (2026-11-17) or an ISO time.",
)
@click.option("--until", help="End (not included), in the same forms; default: now.")
@click.option("--workspace", "workspace_id", help="Only this workspace (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--png",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also draw the days (texts, and what came of them) to this PNG file.",
)
def report(
    since: str, until: str | None, workspace_id: str | None, as_json: bool, png: Path | None
) -> None:
    """How the agent is doing: texts, appointments confirmed, moved and canceled, hand-offs,
    opt-outs, delivery, SMS cost and the model's tokens, latency, fallbacks and corrections,
    with a row per day (days in SMSAGENT_TIMEZONE)."""
    settings = load_settings()
    now = settings.review_now or utcnow()
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    zone = settings.timezone
    start = parse_moment(since, now=now, zone=zone, name="--since")
    end = parse_moment(until, now=now, zone=zone, name="--until") if until else now
    if start >= end:
        raise click.BadParameter(
            f"{since!r} is not before the end of the period ({end.isoformat()})",
            param_hint="--since",
        )

    async def query(sessions: SessionFactory) -> Report:
        async with sessions() as session:
            conn = await session.connection()
            if workspace_id is not None and not await workspace_exists(conn, workspace_id):
                raise click.ClickException(f"no workspace {workspace_id}")
            return await build_report(
                conn, since=start, until=end, zone=zone, workspace_id=workspace_id
            )

    found = read_db(settings, query)
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2))
    elif sys.stdout.isatty():
        console = Console(highlight=False)
        console.print(rich_report(found, width=console.width))
    else:
        click.echo("\n".join(plain_report(found)))
    if png is not None:
        try:
            draw_chart(found, png)
        except OSError as exc:
            raise click.ClickException(f"cannot write {png}: {exc.strerror or exc}") from exc
        click.echo(f"wrote the chart to {png}", err=True)


# What is shown, the same in every form


def _period(found: Report) -> str:
    start, end = (m.astimezone(_zone(found)) for m in (found.since, found.until))
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {found.zone}"


def _zone(found: Report) -> ZoneInfo:
    return ZoneInfo(found.zone)


def _share(rate: float | None, part: int, whole: int) -> str:
    return "-" if rate is None else f"{rate:.1%} ({part} of {whole})"


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def _sections(found: Report) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(label, value)]) of every figure, in reading order."""
    by = found.by_author
    sent = found.delivered + found.undelivered + found.failed
    return [
        (
            "Conversations and texts",
            [
                ("conversations started", str(found.conversations_started)),
                ("conversations active", str(found.conversations_active)),
                ("texts received", str(found.inbound)),
                ("texts sent", str(found.outbound)),
                ("replies by the agent", str(by.get("agent", 0))),
                ("replies by people", str(by.get("human", 0))),
                ("replies by the system", str(by.get("system", 0))),
                ("sent through the API", str(by.get("api", 0))),
            ],
        ),
        (
            "Outcomes",
            [
                ("confirmations", str(found.confirmations)),
                ("moves", str(found.moves)),
                ("cancellations", str(found.cancellations)),
                ("hand-offs", str(found.handoffs)),
                ("opt-outs", str(found.opt_outs)),
            ],
        ),
        (
            "Delivery and cost",
            [
                ("delivery rate", _share(found.delivery_rate, found.delivered, sent)),
                ("undelivered", str(found.undelivered)),
                ("failed", str(found.failed)),
                ("segments", f"{found.segments:,}"),
                ("SMS cost", f"${found.cost_cents / 100:,.2f}"),
            ],
        ),
        (
            "Agent",
            [
                ("agent runs", f"{found.runs:,}"),
                ("runs with the model", f"{found.model_runs:,}"),
                ("prompt tokens", f"{found.prompt_tokens:,}"),
                ("completion tokens", f"{found.completion_tokens:,}"),
                ("turn latency p50", _seconds(found.latency_p50_ms)),
                ("turn latency p95", _seconds(found.latency_p95_ms)),
                (
                    "fallback rate",
                    _share(found.fallback_rate, found.fallbacks, found.model_runs),
                ),
                (
                    "correction rate",
                    _share(found.correction_rate, found.corrections, found.model_runs),
                ),
            ],
        ),
    ]


def _reasons(found: Report) -> list[tuple[str, str]]:
    return [(r.reason, str(r.count)) for r in found.handoff_reasons]


def _failures(found: Report) -> list[tuple[str, str]]:
    return [
        (" ".join(p for p in (f.error_code, f.error_message) if p), str(f.count))
        for f in found.failures
    ]


# Piped: key: value lines and plain aligned tables


def plain_report(found: Report) -> list[str]:
    lines = [f"period: {_period(found)}", f"workspace: {found.workspace_id or 'all'}"]
    for _, figures in _sections(found):
        lines.append("")
        lines += [f"{label}: {value}" for label, value in figures]
    for title, rows in (
        ("hand-off reasons", _reasons(found)),
        ("delivery failures", _failures(found)),
    ):
        if rows:
            lines += ["", f"{title}:", *_aligned(rows, indent="  ")]
    header = ("day", *(label for label, _ in _DAILY))
    days = [(d.day.isoformat(), *(str(getattr(d, key)) for _, key in _DAILY)) for d in found.days]
    lines += ["", "daily:", *_aligned([header, *days], indent="  ", right_from=1)]
    return lines


def _aligned(rows: Sequence[Sequence[str]], *, indent: str, right_from: int = -1) -> list[str]:
    """Columns padded to their widest cell: numbers to the right (the last column, or every
    column from `right_from`)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    first_right = right_from if right_from >= 0 else len(widths) - 1
    return [
        indent
        + "  ".join(
            cell.rjust(width) if i >= first_right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


# On a terminal: panels, side by side when there is room


def rich_report(found: Report, *, width: int) -> RenderableType:
    extras: dict[int, tuple[str, list[tuple[str, str]]]] = {}
    if found.handoff_reasons:
        extras[1] = ("hand-off reasons", _reasons(found))
    if found.failures:
        extras[2] = ("failures by error code", _failures(found))
    specs = [(title, figures, extras.get(n)) for n, (title, figures) in enumerate(_sections(found))]
    title = Text.assemble(
        ("Report ", "bold"),
        (_period(found), ""),
        ("  ·  ", "dim"),
        (f"workspace {found.workspace_id}" if found.workspace_id else "all workspaces", ""),
    )
    wide = width >= _WIDE
    if not wide:
        return Group(
            title, *(_panel(*spec) for spec in specs), _daily(found, bars=False, width=width)
        )
    # Side by side, panels in a row are as tall as the taller one.
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    for left, right in ((specs[0], specs[2]), (specs[1], specs[3])):
        height = max(_lines(*left), _lines(*right))
        grid.add_row(_panel(*left, height=height), _panel(*right, height=height))
    return Group(title, grid, _daily(found, bars=True, width=width))


def _lines(
    title: str,
    figures: list[tuple[str, str]],
    more: tuple[str, list[tuple[str, str]]] | None,
) -> int:
    """How tall a panel is: its figures, a gap, heading and rows for the extra, two borders."""
    return len(figures) + (2 + len(more[1]) if more else 0) + 2


def _panel(
    title: str,
    figures: list[tuple[str, str]],
    more: tuple[str, list[tuple[str, str]]] | None,
    *,
    height: int | None = None,
) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(justify="right", style="bold", no_wrap=True)
    for label, value in figures:
        grid.add_row(label, value)
    parts: list[RenderableType] = [grid]
    if more is not None:
        heading, rows = more
        extra = Table.grid(padding=(0, 2))
        extra.add_column()
        extra.add_column(justify="right", style="bold", no_wrap=True)
        for label, value in rows:
            extra.add_row(label, value)
        parts += [Text(""), Text(heading, style="bold"), extra]
    return Panel(Group(*parts), title=title, title_align="left", box=box.ROUNDED, height=height)


def _daily(found: Report, *, bars: bool, width: int) -> Panel:
    # Narrow: no rules between the columns, so all eight fit in 80 columns.
    table = Table(
        box=box.SIMPLE_HEAD if bars else None,
        pad_edge=False,
        header_style="bold",
        expand=bars,
    )
    table.add_column("day", no_wrap=True)
    for label, _ in _DAILY:
        table.add_column(label, justify="right", no_wrap=True)
    most = max((d.inbound + d.outbound for d in found.days), default=0)
    if bars:
        table.add_column("texts (received ▇ sent ▇)", ratio=1, no_wrap=True)
    for d in found.days:
        cells: list[RenderableType] = [f"{d.day:%a %m-%d}"]
        cells += [str(getattr(d, key)) if getattr(d, key) else "·" for _, key in _DAILY]
        if bars:
            # What the eight number columns and the borders leave over.
            cells.append(_bar(d.inbound, d.outbound, most, min(max(width - 94, 10), 60)))
        table.add_row(*cells)
    return Panel(table, title="Per day", title_align="left", box=box.ROUNDED)


def _bar(received: int, sent: int, most: int, cells: int) -> Text:
    """Both counts as one bar, the busiest day `cells` long."""
    if not most:
        return Text("")
    scale = cells / most
    whole = round((received + sent) * scale)
    first = min(round(received * scale), whole)
    return Text.assemble(("▇" * first, "cyan"), ("▇" * (whole - first), "green"))


# The chart

_COLOURS = {
    "inbound": "#4c72b0",
    "outbound": "#55a868",
    "confirmations": "#2ca02c",
    "moves": "#1f77b4",
    "cancellations": "#7f7f7f",
    "handoffs": "#ff7f0e",
    "opt_outs": "#d62728",
}


def draw_chart(found: Report, path: Path) -> None:
    """Texts per day (received and sent side by side) over what came of them (stacked), on a
    1200×700 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(figure)
    volume, outcomes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    # Room on the right for the legends, so they never cover a bar.
    figure.subplots_adjust(left=0.06, right=0.86, top=0.9, bottom=0.1, hspace=0.15)
    days = range(len(found.days))
    volume.bar(
        [x - 0.2 for x in days],
        [d.inbound for d in found.days],
        0.4,
        label="received",
        color=_COLOURS["inbound"],
    )
    volume.bar(
        [x + 0.2 for x in days],
        [d.outbound for d in found.days],
        0.4,
        label="sent",
        color=_COLOURS["outbound"],
    )
    volume.set_ylabel("texts")
    bottom = [0] * len(found.days)
    for label, key in _DAILY[2:]:
        counts = [getattr(d, key) for d in found.days]
        outcomes.bar(days, counts, 0.6, bottom=bottom, label=label, color=_COLOURS[key])
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    outcomes.set_ylabel("outcomes")
    # A label for every day up to two weeks; then every few days, so they never overlap.
    step = -(-len(found.days) // 14)
    shown = found.days[::step]
    outcomes.set_xticks(list(days)[::step], [d.day.strftime("%a\n%b %d") for d in shown])
    for axes in (volume, outcomes):
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.margins(y=0.1)
        axes.spines[["top", "right"]].set_visible(False)
    scope = found.workspace_id or "all workspaces"
    figure.suptitle(f"Texts and outcomes per day, {_period(found)} ({scope})", fontsize=13)
    figure.savefig(path, dpi=100, format="png")
