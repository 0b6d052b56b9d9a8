"""Snapshot files for CLI output: compare, or rewrite with SMSAGENT_UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import os
import re
from pathlib import Path

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def plain(text: str) -> str:
    """Terminal output without its colours and with the pty's line ends."""
    return _ANSI.sub("", text).replace("\r\n", "\n")


def check(name: str, text: str) -> None:
    """`text` is what `snapshots/{name}.txt` holds (trailing spaces on a line ignored)."""
    path = SNAPSHOTS / f"{name}.txt"
    shown = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    if os.environ.get("SMSAGENT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(shown)
        return
    assert path.exists(), f"no snapshot {path.name}: write it with SMSAGENT_UPDATE_SNAPSHOTS=1"
    expected = path.read_text()
    assert shown == expected, f"{path.name} differs:\n--- expected\n{expected}--- got\n{shown}"
