"""What people see of `transcripts list`, `show` and `search` on the seeded week: a terminal 80
and 160 columns wide, and a pipe, against snapshot files (SQLite; the same rows are read on
PostgreSQL by the other review tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.engine import create_engine
from tests.harness import Database
from tests.review_seed import CORRECTED, TAKEN_OVER, review_env, seed_review
from tests.snapshots import check, plain
from tests.terminal import run_cli

WIDTHS = [("80", 80), ("160", 160), ("piped", None)]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = Path(tmp_path_factory.mktemp("review")) / "smsagent.db"
    db = Database(url=f"sqlite+aiosqlite:///{path}", schema=None)

    async def seed() -> None:
        engine = create_engine(db.url)
        try:
            await seed_review(engine)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return review_env(db)


def _shown(env: dict[str, str], args: list[str], columns: int | None) -> str:
    code, out, err = run_cli(args, env, columns=columns)
    assert code == 0, err
    if columns is None:
        assert "\x1b" not in out  # no colour in a pipe
    shown = plain(out)
    widest = max(len(line) for line in shown.splitlines())
    assert widest <= (columns or 1000), f"a line of {widest} columns on a {columns}-column terminal"
    return shown


@pytest.mark.parametrize(("name", "columns"), WIDTHS)
def test_list(seeded: dict[str, str], name: str, columns: int | None) -> None:
    shown = _shown(seeded, ["transcripts", "list"], columns)
    check(f"list_{name}", shown)
    assert TAKEN_OVER in shown  # whole, whatever the width


@pytest.mark.parametrize(("name", "columns"), WIDTHS)
def test_show(seeded: dict[str, str], name: str, columns: int | None) -> None:
    shown = _shown(seeded, ["transcripts", "show", TAKEN_OVER[:16]], columns)
    check(f"show_{name}", shown)
    for seen in ("Maria Lopez", "Called her back, all sorted", "conversation.taken_over"):
        assert seen in shown


def test_show_raw(seeded: dict[str, str]) -> None:
    shown = _shown(seeded, ["transcripts", "show", CORRECTED, "--raw"], 160)
    check("show_raw_160", shown)
    assert "model call 2 input:" in shown


@pytest.mark.parametrize(("name", "columns"), [("80", 80), ("piped", None)])
def test_search(seeded: dict[str, str], name: str, columns: int | None) -> None:
    check(f"search_{name}", _shown(seeded, ["transcripts", "search", "appointment"], columns))
