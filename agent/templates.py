"""`{variable}` templates: the workspace's message templates and the agent's greeting."""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.errors import InvalidInput

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def variables_of(body: str) -> list[str]:
    """The variables a template uses, in order of first use."""
    return list(dict.fromkeys(_VARIABLE.findall(body)))


def render(body: str, variables: Mapping[str, object], *, field: str = "variables") -> str:
    """Fill each `{name}`; a missing one is refused, naming every one that is missing.

    Anything else in braces, and `$`, stay as written ("Total: ${amount}" → "Total: $120").
    """
    missing = [name for name in variables_of(body) if _blank(variables.get(name))]
    if missing:
        raise InvalidInput(
            f"missing template variables: {', '.join(missing)}",
            details=[{"field": f"{field}.{name}", "message": "required"} for name in missing],
        )
    return _VARIABLE.sub(lambda m: _text(variables[m.group(1)]), body)


def render_lenient(body: str, variables: Mapping[str, object]) -> str:
    """Fill what is given and drop the rest, tidying the gap ("Hi {first_name}!" → "Hi!")."""
    text = _VARIABLE.sub(
        lambda m: "" if _blank(variables.get(m.group(1))) else _text(variables[m.group(1)]), body
    )
    text = re.sub(r"[ \t]+([,.!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
