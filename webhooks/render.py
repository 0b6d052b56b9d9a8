"""Eval results for people: a row per scenario, then the pass^k line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.evals.report import TrialResult, summary


def render_eval(results: Sequence[TrialResult], trials: int) -> None:
    """One row per scenario (passes of its trials, and why the first failing one failed), then
    pass^1..pass^k."""
    console = Console()
    table = Table("scenario", "passed", "safe", "first problem", expand=False)
    by_scenario: dict[str, list[TrialResult]] = {}
    for result in results:
        by_scenario.setdefault(result.scenario, []).append(result)
    for scenario, runs in by_scenario.items():
        passed = sum(r.passed for r in runs)
        safe = sum(r.safe for r in runs)
        problem = next((p for r in runs for p in (*r.unsafe, *r.failures)), "")
        table.add_row(
            scenario,
            Text(f"{passed}/{len(runs)}", style="green" if passed == len(runs) else "yellow"),
            Text(f"{safe}/{len(runs)}", style="green" if safe == len(runs) else "bold red"),
            problem,
        )
    console.print(table)
    totals = summary(results, trials)
    hats = "  ".join(f"pass^{k} {v:.3f}" for k, v in totals["pass_hat"].items())
    console.print(
        f"{hats}  safe {totals['safe_rate']:.3f} ({totals['unsafe_trials']} unsafe trials)  "
        f"corrections {totals['corrections']}  tokens {totals['prompt_tokens']}+"
        f"{totals['completion_tokens']}  {totals['seconds']}s"
    )
