"""Typed keys for what the application holds."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from agent.deps import Deps
from agent.settings import Settings
from storage.raw import Dialect, Plan

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
# Stores a request's answer (status, JSON text) in the transaction that made it.
Keep = Callable[[Dialect, int, str], Plan[None]]
# On a request sent with an Idempotency-Key: where its answer is kept, so a handler that writes
# in one transaction keeps the answer in it too (see webhooks/idempotency.py).
KEEP_ANSWER: web.RequestKey[Keep] = web.RequestKey("keep_answer")
# The workspace a request's API key belongs to, once looked up.
WORKSPACE_ID: web.RequestKey[str] = web.RequestKey("workspace_id", str)
