"""What the conversation core needs from outside, handed in by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.providers import SmsProvider
from agent.settings import Settings
from storage.engine import SessionFactory

if TYPE_CHECKING:
    from agent.brain import Brain

DEFAULT_WORKSPACE_ID = "ws_default"


@dataclass
class Nudge:
    """Tells the worker new work is waiting, so it need not wait for its next poll."""

    event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self) -> None:
        self.event.set()


@dataclass(frozen=True)
class Deps:
    settings: Settings
    sessions: SessionFactory
    providers: Mapping[str, SmsProvider]
    brain: Brain | None
    nudge: Nudge
    workspace_id: str = DEFAULT_WORKSPACE_ID

    def provider(self, name: str) -> SmsProvider | None:
        return self.providers.get(name)
