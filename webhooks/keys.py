"""Typed keys for what the application holds."""

from __future__ import annotations

from aiohttp import web

from agent.deps import Deps
from agent.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
