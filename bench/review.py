"""Reviewing a big database: `transcripts export` (JSONL, CSV, HTML) and `transcripts search` on
100,000 conversations of two businesses, each against a floor measured in the same run.

Export runs the real CLI as a child process: its time against a bare loop that reads every body
and writes it to a file, its peak RSS against `smsagent --version` (the same interpreter and
imports, before anything is read). Search runs `search_messages` in process against the same
queries as a `LIKE '%word%'` scan (what it would cost without the full-text index).

`python -m bench review [--conversations 100000] [--no-postgres]`
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import PG_DSN, ROOT, drop_schema, pg_answers
from storage.engine import create_engine, create_reader_engine
from storage.migrate import migrate
from storage.raw import Dialect, finish_plans, rows
from storage.review import search_messages, words
from storage.types import new_id, utcnow

RSS_BAR_MB = 200.0
SEARCH_BAR_MS = 100.0
SEARCH_RUNS, LIKE_RUNS = 5, 3  # each after a warm-up; a scan takes a few hundred ms
CONTACTS_PER_CONVERSATION = 0.6
BATCH = 5_000  # conversations per seeding transaction
DAYS = 90
# Words found nowhere else, each planted in this many conversations' first text (fewer when
# the run is small), so a search for one has an exact answer.
RARE = {"quokka": 1, "zanzibar": 7, "kumquat": 40, "xylophone": 300}
QUERIES: dict[str, list[tuple[str, timedelta | None]]] = {
    "rare word": [(w, None) for w in RARE],
    "common word": [(w, None) for w in ("appointment", "thanks", "confirmed", "technician")],
    "two words": [
        (w, None) for w in ("water heater", "root canal", "kitchen sink", "insurance card")
    ],
    "prefix": [(w, None) for w in ("resched", "appoint", "plumb", "techn")],
    "word + since": [
        ("leak", timedelta(days=7)),
        ("cleaning", timedelta(hours=24)),
        ("reschedule", timedelta(days=30)),
        ("parking", timedelta(days=3)),
    ],
}
FORMATS = ("jsonl", "csv", "html")


def _words(text: str) -> list[str]:
    return text.split()


# What the businesses and their customers say.
FIRST = _words(
    "Sarah Michael Emily James Olivia Robert Karen David Jennifer Patricia Thomas Lucia Nancy "
    "Kevin Brian Steven Mark Maria Daniel Laura Jose Aisha Wei Priya Omar Hannah Ethan Grace Noah "
    "Chloe Liam Zoe Mateo Fatima Hiroshi Ingrid Tariq Rosa Derek Megan Andre Keisha Dmitri Elena "
    "Samuel Naomi Victor Julia Marcus Leah"
)
LAST = _words(
    "Johnson Chen Davis Brown Wilson Taylor White Lee Garcia Moore Anderson Hernandez Thomas "
    "Martin Clark Young Allen Lopez Nguyen Patel Kim Okafor Rossi Schmidt Novak Silva Cohen "
    "Murphy Walsh Kowalski Ibrahim Tanaka Larsen Dubois Alvarez Reyes Bennett Foster Hughes Price"
)
STREETS = _words("Maple Oak Elm Cedar Pine Birch Willow Chestnut Sycamore Magnolia Juniper Linden")
WEEKDAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday")
CLOCK = [f"{h if h <= 12 else h - 12}:{m:02d} {'AM' if h < 12 else 'PM'}" for h in range(8, 18)
         for m in (0, 30)]  # fmt: skip
SERVICES = (
    "cleaning",
    "checkup",
    "filling",
    "crown fitting",
    "root canal",
    "whitening",
    "extraction",
    "deep cleaning",
    "night guard fitting",
    "implant consult",
)
JOBS = (
    ("water heater install", "the water heater stopped making hot water"),
    ("drain cleaning", "the basement floor drain is backing up"),
    ("leak repair", "water is leaking under the kitchen sink"),
    ("toilet repair", "the toilet keeps running all night"),
    ("sewer line inspection", "we smell sewage in the laundry room"),
    ("garbage disposal swap", "the garbage disposal hums but won't spin"),
    ("shower valve repair", "the shower only runs cold"),
    ("sump pump service", "the sump pump is making a grinding noise"),
    ("spigot replacement", "the outdoor spigot froze and cracked"),
    ("pressure check", "there's low water pressure in the upstairs bathroom"),
)
REASONS = (
    "something came up at work",
    "my daughter has a school recital",
    "I'm out of town that week",
    "my car is in the shop",
    "I have a doctor's visit then",
    "we have family visiting",
    "I got called for jury duty",
    "my shift changed",
    "the babysitter cancelled",
)
CONFIRMS = ("C", "Yes", "Yes I'll be there!", "Confirmed, thanks", "yep see you then", "Y")
THANKS = ("Thank you!", "Thanks so much", "Great, thanks", "Perfect", "ok thx", "Sounds good")
DENTAL_QA = (
    ("Do I need to bring my insurance card?", "Yes, please bring your insurance card and ID."),
    ("Is there parking nearby?", "There's free parking behind the building on {street} Street."),
    ("How long will it take?", "A {service} usually takes about an hour."),
    ("Can I eat before?", "Yes, eat as usual; just brush before you come in."),
    ("Do you take Delta Dental?", "We accept Delta Dental and most PPO plans."),
)
PLUMBING_QA = (
    ("Roughly how much is that usually?", "A {service} is usually $150-$400 with parts."),
    ("Do you charge for the estimate?", "Estimates are free; the service call is $89."),
    ("Will the tech call before coming?", "The technician texts you 30 minutes before arriving."),
    ("Should I turn the water off?", "Yes, close the main shut-off valve until we arrive."),
)
EXTRAS = (
    "Sorry for the late reply.",
    "I'm at work until 5 so text is best.",
    "My husband might come instead.",
    "Please use the side door, the dog barks.",
    "I'll probably be a few minutes late.",
    "Can you send the address again?",
)

CONTACT_COLUMNS = (
    "id, workspace_id, phone, first_name, last_name, email, custom_fields, tags, opted_out, "
    "blocked, profile, created_at, updated_at"
)
CONVERSATION_COLUMNS = (
    "id, workspace_id, contact_id, sender_number, provider, status, mode, handoff_reason, "
    "created_at, updated_at, last_message_at"
)
RUN_COLUMNS = (
    "id, workspace_id, conversation_id, model, prompt_tokens, completion_tokens, latency_ms, "
    "tool_calls, inbound_message_ids, corrections, outcome, started_at, finished_at"
)
MESSAGE_COLUMNS = (
    "id, workspace_id, conversation_id, direction, author, body, media_urls, from_number, "
    "to_number, provider, provider_message_id, status, error_code, error_message, segments, "
    "encoding, cost_cents, handled_at, agent_run_id, created_at, updated_at, sent_at, "
    "delivered_at, hidden"
)
EVENT_COLUMNS = "id, workspace_id, conversation_id, agent_run_id, type, data, created_at"
TABLES = (
    ("contacts", CONTACT_COLUMNS),
    ("conversations", CONVERSATION_COLUMNS),
    ("agent_runs", RUN_COLUMNS),
    ("messages", MESSAGE_COLUMNS),
    ("events", EVENT_COLUMNS),
)

Row = tuple[Any, ...]


@dataclass
class Batch:
    """Rows for one seeding transaction, each table's in TABLES' order, parents first."""

    tables: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t, _ in TABLES})


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    number: str
    dental: bool


@dataclass
class Seeded:
    conversations: int = 0
    messages: int = 0
    planted: dict[str, int] = field(default_factory=dict)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _script(rng: Random, dental: bool, first: str) -> tuple[list[tuple[str, str]], str, str]:
    """A thread's texts as (author, body), the agent's tool call, the event it leads to."""
    day, other = rng.sample(WEEKDAYS, 2)
    clock, later = (CLOCK[n] for n in sorted(rng.sample(range(len(CLOCK)), 2)))
    street = rng.choice(STREETS)
    if dental:
        service = rng.choice(SERVICES)
        head = (
            f"Hi {first}, this is Bright Smiles Dental: your {service} appointment is on {day} "
            f"at {clock}. Reply C to confirm or R to reschedule."
        )
        kind = rng.random()
        if kind < 0.5:
            question, answer = rng.choice(DENTAL_QA)
            said = [
                ("api", head),
                ("contact", rng.choice(CONFIRMS)),
                ("agent", f"Thanks {first}, you're confirmed for {day} at {clock}."),
                ("contact", question),
                ("agent", answer.format(street=street, service=service)),
            ]
            return said, "confirm_appointment", "appointment.confirmed"
        if kind < 0.85:
            said = [
                ("api", head),
                ("contact", f"Can we reschedule to {other}? {rng.choice(REASONS).capitalize()}."),
                ("agent", f"I have {other} at {clock} or {later}. Which works better?"),
                ("contact", f"{later} please"),
                ("agent", f"Done! Your {service} is rescheduled to {other} at {later}."),
            ]
            return said, "reschedule_appointment", "appointment.rescheduled"
        said = [
            ("api", head),
            ("contact", f"I need to cancel, {rng.choice(REASONS)}. I'll call to rebook."),
            ("agent", f"No problem {first}, your {service} on {day} is cancelled."),
            ("contact", rng.choice(THANKS)),
        ]
        return said, "cancel_appointment", "appointment.canceled"
    service, problem = rng.choice(JOBS)
    question, answer = rng.choice(PLUMBING_QA)
    said = [
        ("contact", f"Hi, {problem} at {rng.randint(10, 999)} {street} Ave. Can someone come?"),
        (
            "agent",
            f"Sorry to hear that, {first}. A technician can come {day} between {clock} and "
            f"{later}. Does that work?",
        ),
        ("contact", question),
        ("agent", answer.format(service=service)),
        ("contact", f"Ok book the {service} for {day} then"),
        ("agent", f"You're booked for {day}, {clock}-{later}. Rapid Rooter Plumbing"),
    ]
    return said, "log_event", "custom.job_booked"


@dataclass(frozen=True)
class Person:
    id: str
    space: Workspace
    phone: str
    first: str


@dataclass
class Thread:
    """One conversation's rows; its messages with the moment each was written."""

    conversation: Row
    run: Row
    events: list[Row]
    messages: list[tuple[float, Row]]


def _thread(rng: Random, start: float, person: Person, rare: str | None, now: float) -> Thread:
    space, phone = person.space, person.phone
    said, tool, happened = _script(rng, space.dental, person.first)
    if rng.random() < 0.3:
        said.append(("contact", rng.choice(THANKS) + " " + rng.choice(EXTRAS)))
    if rare is not None:
        at = next(n for n, (who, _) in enumerate(said) if who == "contact")
        said[at] = ("contact", f"{said[at][1]} Also, my neighbor {rare} says hi.")
    conversation_id, run_id = new_id("conv"), new_id("run")
    moment, inbound, messages = start, list[str](), []
    for who, body in said:
        incoming = who == "contact"
        message_id = new_id("msg")
        when = _at(moment)
        lost = not incoming and rng.random() < 0.01
        status = "received" if incoming else "undelivered" if lost else "delivered"
        segments = 0 if incoming else 1 + len(body) // 154
        messages.append((moment, (
            message_id, space.id, conversation_id, "inbound" if incoming else "outbound",
            who, body, "[]", phone if incoming else space.number,
            space.number if incoming else phone, "twilio", "SM" + secrets.token_hex(16),
            status, "30007" if lost else None, "Carrier violation" if lost else None, segments,
            None if incoming else "GSM-7", None if incoming else round(segments * 0.79, 4),
            _at(moment + 3) if incoming else None,
            run_id if who == "agent" or (incoming and not inbound) else None,
            when, when, None if incoming else _at(moment + 1),
            _at(moment + 4) if status == "delivered" else None, False,
        )))  # fmt: skip
        if incoming:
            inbound.append(message_id)
        # The agent answers in seconds, the customer in minutes to hours.
        moment += rng.uniform(3, 15) if incoming else rng.expovariate(1 / 1800) + 20
    last = _at(messages[-1][0])
    person_needed = rng.random() < 0.04
    status = "pending" if person_needed else "closed" if moment < now - 3 * 86400 else "open"
    call = {"name": tool, "args": {}, "result": "Done.", "error": False}
    started = json.dumps({"source": "v1"})
    events: list[Row] = [
        (
            new_id("evt"),
            space.id,
            conversation_id,
            None,
            "conversation.started",
            started,
            _at(start),
        )
    ]
    if rng.random() < 0.5:
        events.append((new_id("evt"), space.id, conversation_id, run_id, happened,
                       json.dumps({"source": "agent"}), _at(start + 8)))  # fmt: skip
    return Thread(
        (conversation_id, space.id, person.id, space.number, "twilio", status,
         "human" if person_needed else "agent",
         "billing question" if person_needed else None, _at(start), last, last),
        (run_id, space.id, conversation_id, "gpt-4o-mini", rng.randint(1500, 2200),
         rng.randint(30, 90), rng.randint(900, 4000), json.dumps([call]),
         json.dumps(inbound[:1]), "[]", "replied", _at(start + 5), _at(start + 8)),
        events,
        messages,
    )  # fmt: skip


def corpus(conversations: int, seed: int = 7) -> tuple[list[Workspace], Iterator[Batch], Seeded]:
    """The workspaces, then batches of rows in time order: messages in the order they were
    written, so SQLite's rowids run oldest to newest as in a real database."""
    rng = Random(seed)
    now = time.time()
    spaces = [
        Workspace(new_id("ws"), "Bright Smiles Dental", "+15550001111", True),
        Workspace(new_id("ws"), "Rapid Rooter Plumbing", "+15550002222", False),
    ]
    wanted = {word: max(1, min(count, conversations // 20)) for word, count in RARE.items()}
    chosen = iter(rng.sample(range(conversations), min(conversations, sum(wanted.values()))))
    planted = {
        i: w for w, count in wanted.items() for _, i in zip(range(count), chosen, strict=False)
    }
    seeded = Seeded(planted={w: sum(1 for p in planted.values() if p == w) for w in RARE})

    def batches() -> Iterator[Batch]:
        batch = Batch()
        people = []
        for n in range(max(1, int(conversations * CONTACTS_PER_CONVERSATION))):
            person = Person(
                new_id("ct"), spaces[n % 5 // 3], f"+1{2015550000 + n}", rng.choice(FIRST)
            )
            people.append(person)
            since = _at(now - (DAYS + 30 - rng.random() * 30) * 86400)
            batch.tables["contacts"].append(
                (person.id, person.space.id, person.phone, person.first, rng.choice(LAST), None,
                 "{}", json.dumps(["vip"] if n % 17 == 0 else []), False, False, "{}", since, since)
            )  # fmt: skip
        starts = sorted(
            now - (DAYS - rng.random() * (DAYS - 1)) * 86400 for _ in range(conversations)
        )
        # Threads overlap: a message waits here until every thread started before it is out.
        waiting: list[tuple[float, int, Row]] = []
        for i, start in enumerate(starts):
            while waiting and waiting[0][0] < start:
                batch.tables["messages"].append(heapq.heappop(waiting)[2])
            thread = _thread(rng, start, rng.choice(people), planted.get(i), now)
            batch.tables["conversations"].append(thread.conversation)
            batch.tables["agent_runs"].append(thread.run)
            batch.tables["events"] += thread.events
            for moment, row in thread.messages:
                heapq.heappush(waiting, (moment, seeded.messages, row))
                seeded.messages += 1
            seeded.conversations += 1
            if (i + 1) % BATCH == 0:
                yield batch
                batch = Batch()
        while waiting:
            batch.tables["messages"].append(heapq.heappop(waiting)[2])
        yield batch

    return spaces, batches(), seeded


# Seeding


LITE = Dialect("sqlite")


def _lite(value: Any) -> Any:
    if isinstance(value, datetime):
        return LITE.ts(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _workspace_rows(spaces: Sequence[Workspace]) -> tuple[list[Row], list[Row]]:
    opened = utcnow() - timedelta(days=DAYS + 60)
    return [
        (s.id, s.name, s.name, "America/New_York", "dental" if s.dental else "home_services",
         opened, opened, "[]", "builtin", "{}")
        for s in spaces
    ], [(s.number, s.id, "twilio", opened) for s in spaces]  # fmt: skip


WORKSPACE_INSERT = (
    "INSERT INTO workspaces (id, name, business_name, timezone, vertical, created_at, "
    "updated_at, closed_days, scheduling, appointment_types) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
NUMBER_INSERT = (
    "INSERT INTO sender_numbers (number, workspace_id, provider, created_at) VALUES (?,?,?,?)"
)


class SqliteSeed:
    """Raw executemany, a transaction per batch. The full-text index is built once at the end
    (FTS5's `rebuild`) instead of row by row through its trigger, which is put back after."""

    def __init__(self, path: Path, spaces: Sequence[Workspace]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            self.conn.execute(f"PRAGMA {pragma}")
        found = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'messages_fts_insert'"
        ).fetchone()
        self.trigger = str(found[0])
        self.conn.execute("DROP TRIGGER messages_fts_insert")
        spaces_rows, numbers = _workspace_rows(spaces)
        self.conn.executemany(WORKSPACE_INSERT, [tuple(map(_lite, r)) for r in spaces_rows])
        self.conn.executemany(NUMBER_INSERT, [tuple(map(_lite, r)) for r in numbers])
        self.seconds = 0.0

    def write(self, batch: Batch) -> None:
        started = time.perf_counter()
        self.conn.execute("BEGIN")
        for table, columns in TABLES:
            marks = ", ".join("?" * (columns.count(",") + 1))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
            self.conn.executemany(sql, [tuple(map(_lite, r)) for r in batch.tables[table]])
        self.conn.execute("COMMIT")
        self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        started = time.perf_counter()
        self.conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        self.conn.execute(self.trigger)
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
        self.seconds += time.perf_counter() - started


class PostgresSeed:
    """COPY, a transaction per batch, then VACUUM ANALYZE (what autovacuum does in time)."""

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn, self.schema = conn, schema
        self.seconds = 0.0

    @classmethod
    async def open(cls, schema: str, spaces: Sequence[Workspace]) -> PostgresSeed:
        conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        spaces_rows, numbers = _workspace_rows(spaces)
        await conn.executemany(Dialect("postgresql").sql(WORKSPACE_INSERT), spaces_rows)
        await conn.executemany(Dialect("postgresql").sql(NUMBER_INSERT), numbers)
        return cls(conn, schema)

    async def write(self, batch: Batch) -> None:
        started = time.perf_counter()
        async with self.conn.transaction():
            for table, columns in TABLES:
                await self.conn.copy_records_to_table(
                    table,
                    records=batch.tables[table],
                    columns=columns.split(", "),
                    schema_name=self.schema,
                )
        self.seconds += time.perf_counter() - started

    async def finish(self) -> None:
        started = time.perf_counter()
        for table, _ in TABLES:
            await self.conn.execute(f"VACUUM ANALYZE {table}")
        await self.conn.close()
        self.seconds += time.perf_counter() - started


async def _migrated(url: str, schema: str | None) -> None:
    engine = create_engine(url, schema=schema, pool_size=1)
    try:
        await migrate(engine, schema=schema)
    finally:
        await finish_plans(engine)
        await engine.dispose()


async def seed(
    conversations: int, path: Path, schema: str | None
) -> tuple[Seeded, float, float | None]:
    """Both databases from the same rows; seconds each took to write (generating aside)."""
    await _migrated(f"sqlite+aiosqlite:///{path}", None)
    if schema:
        await _migrated(PG_URL, schema)
    spaces, batches, seeded = corpus(conversations)
    lite = SqliteSeed(path, spaces)
    pg = await PostgresSeed.open(schema, spaces) if schema else None
    for batch in batches:
        lite.write(batch)
        if pg is not None:
            await pg.write(batch)
    lite.finish()
    if pg is not None:
        await pg.finish()
    return seeded, lite.seconds, pg.seconds if pg else None


PG_URL = PG_DSN.replace("postgresql://", "postgresql+asyncpg://")


# Export


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_mb: float


# Forks the command and reports its wall time and peak RSS. Forked from this small launcher, the
# command's peak starts from the launcher's few MB; forked from the benchmark itself (or any
# process it execs), the kernel would count the benchmark's own memory as the command's peak.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{time.perf_counter() - started} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def child(args: list[str], env: dict[str, str]) -> Child:
    """Run `python ARGS` to its end: wall time and peak RSS (the kernel's count, ru_maxrss)."""
    with tempfile.TemporaryDirectory() as folder, (Path(folder) / "errors").open("w+b") as errors:
        report = Path(folder) / "report"
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            check=False,
        )
        if done.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed: {errors.read().decode()[-2000:]}")
        seconds, kib = report.read_text().split()
    return Child(float(seconds), int(kib) / 1024)


def floor_sqlite(path: Path, out: Path) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with out.open("w", encoding="utf-8") as f:
        for (body,) in conn.execute("SELECT body FROM messages"):
            f.write(body)
            f.write("\n")
    conn.close()
    return time.perf_counter() - started


async def floor_postgres(schema: str, out: Path) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        with out.open("w", encoding="utf-8") as f:
            async with conn.transaction():
                async for record in conn.cursor("SELECT body FROM messages", prefetch=10_000):
                    f.write(record[0])
                    f.write("\n")
    finally:
        await conn.close()
    return time.perf_counter() - started


def check(kind: str, path: Path, seeded: Seeded) -> str:
    """What the file holds against what was seeded: `ok` or what is wrong."""
    with path.open(encoding="utf-8", newline="") as f:
        if kind == "jsonl":
            found, want, unit = sum(1 for _ in f), seeded.conversations, "lines"
        elif kind == "csv":
            found, want, unit = sum(1 for _ in csv.reader(f)), seeded.messages + 1, "rows"
        else:
            found = sum(line.count('<section class="thread"') for line in f)
            want, unit = seeded.conversations, "threads"
    return f"{found:,} {unit} " + ("ok" if found == want else f"WRONG, want {want:,}")


def export(name: str, env: dict[str, str], folder: Path, floor: float, seeded: Seeded,
           formats: Sequence[str]) -> None:  # fmt: skip
    """Each format through the CLI, against the baseline and the floor."""
    # Once unmeasured: a source file changed since its bytecode was cached costs a compile.
    child(["-m", "webhooks.cli", "--version"], env)
    base = child(["-m", "webhooks.cli", "--version"], env)
    print(f"\nexport, {name}: `transcripts export --format F --out FILE`, every conversation")
    print(f"{'run':24}{'seconds':>9}{'conv/s':>9}{'peak MB':>9}{'over base':>11}"
          f"{'vs floor':>10}{'out MB':>9}  check")  # fmt: skip
    print(f"{'baseline: --version':24}{base.seconds:>9.2f}{'-':>9}{base.peak_mb:>9.1f}"
          f"{0:>11.1f}{'-':>10}{'-':>9}")  # fmt: skip
    print(f"{'floor: bodies to a file':24}{floor:>9.2f}{'-':>9}{'-':>9}{'-':>11}{1:>9.2f}x"
          f"{(folder / 'floor.txt').stat().st_size / 2**20:>9.1f}")  # fmt: skip
    peak = 0.0
    for kind in formats:
        out = folder / f"all.{kind}"
        run = child(
            ["-m", "webhooks.cli", "transcripts", "export", "--format", kind, "--out", str(out)],
            env,
        )
        peak = max(peak, run.peak_mb)
        print(f"{kind:24}{run.seconds:>9.2f}{seeded.conversations / run.seconds:>9,.0f}"
              f"{run.peak_mb:>9.1f}{run.peak_mb - base.peak_mb:>11.1f}"
              f"{run.seconds / floor:>9.1f}x{out.stat().st_size / 2**20:>9.1f}  "
              f"{check(kind, out, seeded)}")  # fmt: skip
        out.unlink()
    verdict = "PASS" if peak < RSS_BAR_MB else "FAIL"
    print(f"bar: peak RSS < {RSS_BAR_MB:.0f} MB: {verdict} (highest {peak:.1f} MB)")


# Search


LIKE_SELECT = (
    "SELECT m.id, m.conversation_id, m.created_at, p.phone, m.body FROM messages m "
    "JOIN conversations c ON c.id = m.conversation_id JOIN contacts p ON p.id = c.contact_id"
)


def like_query(dialect: Dialect, text: str, since: datetime | None) -> tuple[str, list[Any]]:
    """The same search as a scan of every body: what it would cost without the index."""
    found = words(text)
    op = "ILIKE" if dialect.postgres else "LIKE"
    clauses = [f"m.body {op} ?" for _ in found]
    params: list[Any] = [f"%{w}%" for w in found]
    if since is not None:
        clauses.append("m.created_at >= ?")
        params.append(dialect.ts(since))
    where = " AND ".join(clauses)
    return f"{LIKE_SELECT} WHERE {where} ORDER BY m.created_at DESC, m.id DESC LIMIT 25", params


async def _timed(times: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    await call()  # warm-up
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def search(name: str, engine: AsyncEngine, env: dict[str, str], seeded: Seeded) -> None:
    """Each kind of query in process against the same as a scan; then the CLI once, whole."""
    dialect = Dialect(engine.dialect.name)
    print(
        f"\nsearch, {name}: search_messages, limit 25, {SEARCH_RUNS} runs each after a warm-up; "
        f"baseline: the same as LIKE '%word%' over every body, {LIKE_RUNS} runs"
    )
    print(f"{'kind':14}{'queries':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'LIKE p50':>10}"
          f"{'vs LIKE':>10}")  # fmt: skip
    slowest = 0.0
    async with engine.connect() as conn:
        counted = []
        for word, count in seeded.planted.items():
            hits = await search_messages(conn, word, limit=1000)
            counted.append(f"{word} {len(hits)}/{count}" + ("" if len(hits) == count else " WRONG"))
        for kind, queries in QUERIES.items():
            fast: list[float] = []
            slow: list[float] = []
            for text, back in queries:
                since = utcnow() - back if back else None
                sql, params = like_query(dialect, text, since)

                async def indexed(text: str = text, since: datetime | None = since) -> None:
                    await search_messages(conn, text, since=since, limit=25)

                async def scanned(sql: str = sql, params: list[Any] = params) -> None:
                    await rows(conn, dialect, sql, params)

                fast += await _timed(SEARCH_RUNS, indexed)
                slow += await _timed(LIKE_RUNS, scanned)
            slowest = max(slowest, *fast)
            p50, like = statistics.median(fast), statistics.median(slow)
            print(f"{kind:14}{len(queries):>8}{p50:>9.1f}{_p95(fast):>9.1f}{max(fast):>9.1f}"
                  f"{like:>10.1f}{p50 / like:>9.3f}x")  # fmt: skip
    print(f"exact counts (found/planted): {', '.join(counted)}")
    verdict = "PASS" if slowest < SEARCH_BAR_MS else "FAIL"
    print(f"bar: every search < {SEARCH_BAR_MS:.0f} ms: {verdict} (slowest {slowest:.1f} ms)")
    base = child(["-m", "webhooks.cli", "--version"], env)
    cli = child(["-m", "webhooks.cli", "transcripts", "search", "appointment", "--json"], env)
    print(f"CLI end to end, `transcripts search appointment --json`: {cli.seconds:.2f} s "
          f"(process start and imports alone, `--version`: {base.seconds:.2f} s)")  # fmt: skip


async def run(conversations: int, postgres: bool) -> None:
    schema = f"bench_{secrets.token_hex(4)}" if postgres and await pg_answers() else None
    with tempfile.TemporaryDirectory(prefix="smsagent-bench-") as name:
        folder = Path(name)
        path = folder / "bench.db"
        try:
            started = time.perf_counter()
            seeded, lite_seconds, pg_seconds = await seed(conversations, path, schema)
            total = time.perf_counter() - started
            print(f"review: {seeded.conversations:,} conversations, {seeded.messages:,} texts, "
                  f"2 workspaces, {int(conversations * CONTACTS_PER_CONVERSATION):,} contacts "
                  f"over {DAYS} days")  # fmt: skip
            print(
                f"seeded in {total:.0f} s (not a figure): writing SQLite {lite_seconds:.0f} s"
                + (f", PostgreSQL {pg_seconds:.0f} s" if pg_seconds is not None else "")
            )
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("SMSAGENT_")},
                "SMSAGENT_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
                "SMSAGENT_LOG_LEVEL": "WARNING",
            }
            floor = floor_sqlite(path, folder / "floor.txt")
            export("SQLite", env, folder, floor, seeded, FORMATS)
            reader = create_reader_engine(env["SMSAGENT_DATABASE_URL"], pool_size=1)
            assert reader is not None
            try:
                await search("SQLite", reader, env, seeded)
            finally:
                await finish_plans(reader)
                await reader.dispose()
            if schema is None:
                return
            env = {**env, "SMSAGENT_DATABASE_URL": PG_URL, "SMSAGENT_DATABASE_SCHEMA": schema}
            floor = await floor_postgres(schema, folder / "floor.txt")
            # JSONL only: each format takes minutes, and they differ in writing, not reading.
            export("PostgreSQL", env, folder, floor, seeded, FORMATS[:1])
            engine = create_engine(PG_URL, schema=schema, pool_size=1)
            try:
                await search("PostgreSQL", engine, env, seeded)
            finally:
                await engine.dispose()
        finally:
            if schema is not None:
                await drop_schema(schema)


def main(conversations: int, postgres: bool) -> None:
    asyncio.run(run(conversations, postgres))
