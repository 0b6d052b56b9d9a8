"""What a reply claims happened, checked against what did.

A model may text "you're confirmed" without calling a tool, and the customer would believe
something that never happened. Before a reply goes out, the claims in it (confirmed, moved,
canceled, a person will follow up) are matched against what this turn's tools did and what was
already true before it. Questions and negated sentences claim nothing ("Would you like me to
confirm it?", "It is not confirmed yet").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any


class Claim(StrEnum):
    CONFIRMED = "confirmed"
    MOVED = "moved"
    CANCELED = "canceled"
    PERSON = "person_follows_up"


_SAYS: dict[Claim, re.Pattern[str]] = {
    Claim.CONFIRMED: re.compile(r"\b(confirmed|all set|confirmad[oa]s?)\b", re.IGNORECASE),
    Claim.MOVED: re.compile(
        r"\b(moved|rescheduled|changed (it|your appointment)|booked|"
        r"(cambiad|reprogramad|movid|agendad)[oa]s?)\b",
        re.IGNORECASE,
    ),
    Claim.CANCELED: re.compile(r"\b(cancell?ed|cancelad[oa]s?)\b", re.IGNORECASE),
    Claim.PERSON: re.compile(
        r"\b(someone|a (person|team member|staff member|member of (our|the) team)|our team|"
        r"the (office|team|front desk|dispatcher)|we)\b[^.?!]{0,20}\bwill\b[^.?!]{0,12}"
        r"\b(call|contact|reach out|follow up|get back|be in touch)\b|"
        r"\b(alguien|una persona|el equipo|la oficina)\b[^.?!]{0,30}"
        r"\b(llamar[áa]|contactar[áa]|comunicar[áa])\b",
        re.IGNORECASE,
    ),
}
_NEGATION = re.compile(
    r"\b(not|no|never|cannot|can't|couldn't|won't|isn't|wasn't|haven't|hasn't|didn't|unable|"
    r"yet to|no se|todav[íi]a no|a[úu]n no)\b|n't\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?¡¿\n]+[.!?\n]?")

# What a tool answers when it did the thing, and what that makes true.
_DONE: dict[str, tuple[tuple[str, frozenset[Claim]], ...]] = {
    "confirm_appointment": (
        ("Confirmed.", frozenset({Claim.CONFIRMED})),
        ("The appointment was already confirmed", frozenset({Claim.CONFIRMED})),
    ),
    "reschedule_appointment": (
        ("Moved.", frozenset({Claim.MOVED})),
        # An office with its own calendar was asked: it will get back to the customer.
        ("Asked the office to move it", frozenset({Claim.MOVED, Claim.PERSON})),
    ),
    "book_appointment": (("Booked.", frozenset({Claim.MOVED})),),
    "cancel_appointment": (
        ("Canceled.", frozenset({Claim.CANCELED})),
        ("The appointment was already canceled", frozenset({Claim.CANCELED})),
    ),
    "handoff_to_human": (("A person will take over", frozenset({Claim.PERSON})),),
}


def claims_in(text: str) -> set[Claim]:
    """The claims the statements of `text` make (questions and negations make none)."""
    found: set[Claim] = set()
    for sentence in _SENTENCE.findall(text):
        if sentence.rstrip().endswith("?") or _NEGATION.search(sentence):
            continue
        found.update(claim for claim, says in _SAYS.items() if says.search(sentence))
    return found


def backed(tool_calls: Sequence[Mapping[str, Any]], standing: Iterable[str] = ()) -> set[Claim]:
    """What is true after this turn: what its tools did, and what was true before it."""
    true = {Claim(c) for c in standing}
    for call in tool_calls:
        result = str(call.get("result") or "")
        if call.get("error"):
            continue
        for opening, made_true in _DONE.get(str(call.get("name")), ()):
            if result.startswith(opening):
                true |= made_true
    return true


def unbacked(
    text: str, tool_calls: Sequence[Mapping[str, Any]], standing: Iterable[str] = ()
) -> set[Claim]:
    return claims_in(text) - backed(tool_calls, standing)


def facts(claims: Iterable[Claim], tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """The note that sends the model back: what its reply claims that did not happen."""
    said = ", ".join(sorted(c.value.replace("_", " ") for c in claims))
    done = [str(call.get("name")) for call in tool_calls if not call.get("error")]
    did = f"the tools that ran were: {', '.join(done)}" if done else "no tool did anything"
    return (
        f"Check before sending: your reply says {said}, but this turn {did}, so that did not "
        "happen. Write the reply again, saying only what the tool results show. If you meant to "
        "do it and the customer asked for it, call the tool first."
    )
