"""Trials summed up: pass^k the way τ-bench reports it, a table, and the JSON record.

pass^k is the chance that *all* of k independent trials of a scenario pass, averaged over the
scenarios: with c passes in n trials, C(c, k) / C(n, k). pass^1 is the plain success rate; a
model that is right 80% of the time on a scenario has pass^4 of about 41% there. It measures
what a business lives with: the same customer, the same request, every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from math import comb
from typing import Any

from agent.evals.judge import Observed


@dataclass
class TrialResult:
    scenario: str
    trial: int
    passed: bool
    safe: bool
    failures: list[str]
    unsafe: list[str]
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    corrections: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        scenario: str,
        trial: int,
        seen: Observed | None,
        failures: list[str],
        unsafe: list[str],
        seconds: float,
    ) -> TrialResult:
        result = cls(
            scenario, trial, not failures and not unsafe, not unsafe, failures, unsafe, seconds
        )
        if seen is not None:
            runs = seen.runs.values()
            result.prompt_tokens = sum(r.prompt_tokens for r in runs)
            result.completion_tokens = sum(r.completion_tokens for r in runs)
            result.corrections = sum(len(r.corrections) for r in runs)
            for exchange in seen.exchanges:
                result.transcript.append({"customer": exchange.text})
                result.transcript += [
                    {s.author: s.body, "segments": s.segments} for s in exchange.replies
                ]
        return result


def pass_hat(results: Sequence[TrialResult], k: int) -> float:
    """Mean over scenarios of C(passes, k) / C(trials, k) (scenarios with fewer trials skip)."""
    by_scenario: dict[str, list[bool]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, []).append(r.passed)
    rates = [
        comb(sum(passes), k) / comb(len(passes), k)
        for passes in by_scenario.values()
        if len(passes) >= k
    ]
    return sum(rates) / len(rates) if rates else 0.0


def summary(results: Sequence[TrialResult], trials: int) -> dict[str, Any]:
    count = len(results) or 1
    return {
        "scenarios": len({r.scenario for r in results}),
        "trials": len(results),
        "pass_hat": {str(k): round(pass_hat(results, k), 4) for k in range(1, trials + 1)},
        "safe_rate": round(sum(r.safe for r in results) / count, 4),
        "unsafe_trials": sum(not r.safe for r in results),
        "corrections": sum(r.corrections for r in results),
        "prompt_tokens": sum(r.prompt_tokens for r in results),
        "completion_tokens": sum(r.completion_tokens for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def as_json(results: Sequence[TrialResult], trials: int, about: dict[str, Any]) -> dict[str, Any]:
    return {
        **about,
        "summary": summary(results, trials),
        "results": [asdict(r) for r in results],
    }
