"""Domain errors. The HTTP edge maps each `code` to a status and a JSON error body."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class OptedOut(DomainError):
    """The contact withdrew consent; nothing but a STOP confirmation may reach them."""

    code = "contact_opted_out"


class Blocked(DomainError):
    code = "contact_blocked"


class InvalidInput(DomainError):
    code = "validation_error"


class Conflict(DomainError):
    """The request is well formed but the thing is in a state that refuses it (sent already,
    no consent recorded)."""

    code = "conflict"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message, details=details)
        if code is not None:
            self.code = code
