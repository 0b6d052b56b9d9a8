"""What the conversation core needs from outside, handed in by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from agent.providers import SmsProvider
from agent.settings import Settings
from agent.workspaces import NumberBook
from storage.batching import GroupCommit
from storage.engine import SessionFactory
from storage.inbound import InboundRow, Stored
from storage.jobs import Lease
from storage.workspaces import DEFAULT_WORKSPACE_ID as DEFAULT_WORKSPACE_ID

if TYPE_CHECKING:
    from agent.brain import Brain
    from agent.media import MediaKeeper


class Wakeup:
    """One lane's alarm: set by a nudge for its kinds that falls due before it would look."""

    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self.event = asyncio.Event()
        # When the lane looks at the queue next by itself (loop time); 0 while it is busy.
        self.looks_at = 0.0


@dataclass
class Nudge:
    """Tells the worker's lanes new work is waiting, so they need not wait for their next poll.

    `kind` limits it to the lanes that run that kind; `due_at` (loop time) to the lanes that would
    not look before then anyway: a text's turn waits out the quiet window, so accepting it wakes
    nothing, while a reply due now wakes the send lane at once.
    """

    _wakeups: list[Wakeup] = field(default_factory=list)

    def subscribe(self, kinds: Sequence[str] = ()) -> Wakeup:
        wakeup = Wakeup(frozenset(kinds))
        self._wakeups.append(wakeup)
        return wakeup

    def __call__(self, kind: str = "", due_at: float | None = None) -> None:
        for wakeup in self._wakeups:
            if kind and wakeup.kinds and kind not in wakeup.kinds:
                continue
            if due_at is not None and wakeup.looks_at and due_at >= wakeup.looks_at:
                continue
            wakeup.event.set()


@dataclass
class Dispatch:
    """Runs a job born leased to this process (a reply just composed) without a queue trip.
    Until a worker takes the role, such jobs wait for their lease to lapse and run from there."""

    run_now: Callable[[Lease], None] | None = None

    def __call__(self, lease: Lease) -> None:
        if self.run_now is not None:
            self.run_now(lease)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    engine: AsyncEngine  # the writer; hand-written SQL on the hot paths goes here
    sessions: SessionFactory  # read-write sessions on the writer
    reads: SessionFactory  # read-only snapshots (their own connections on SQLite)
    reader: AsyncEngine  # the same connections, for hand-written reads
    providers: Mapping[str, SmsProvider]
    brain: Brain | None
    nudge: Nudge
    inbound: GroupCommit[InboundRow, Stored]
    # Which workspace each of our numbers belongs to (inbound texts are routed by it).
    numbers: NumberBook
    dispatch: Dispatch = field(default_factory=Dispatch)
    workspace_id: str = DEFAULT_WORKSPACE_ID
    # Fetches the media that comes with texts, and reads kept files back (None: not wired).
    media: MediaKeeper | None = None

    def provider(self, name: str) -> SmsProvider | None:
        return self.providers.get(name)
