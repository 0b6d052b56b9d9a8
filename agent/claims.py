"""What a reply claims happened, checked against what did.

A model may text "you're confirmed" without calling a tool, and the customer would believe
something that never happened. Before a reply goes out, the claims in it (confirmed, moved,
canceled, a person will follow up) are matched against what this turn's tools did and what was
already true before it. Questions and negated sentences claim nothing ("Would you like me to
confirm it?", "It is not confirmed yet").

A time of day stated in a reply ("Thursday at 2pm works", "we have 3:30 open") is a claim too:
it must come from what the agent was told (its instructions, which carry the appointments and
the opening hours, and what the business already texted) or from a tool result of this turn.
Otherwise the model made it up.
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
    TIME = "names_a_time"


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


# "2pm", "2 p.m.", "2:30 PM", "14:30", "at 2"; a bare "2:30" or "at 2" may mean either half of
# the day.
_TIME = re.compile(
    r"\b(?:(?P<h12>1[0-2]|0?[1-9])(?::(?P<m12>[0-5]\d))?\s?(?P<half>[ap])\.?\s?m\b\.?"
    r"|(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)\b"
    r"|(?:at|after|before|by|around|from|until|till)\s+(?P<bare>1[0-2]|[1-9])\b"
    r"(?![:\d])(?!\s*(?:[ap]\.?\s?m\b|min|hour|hr|day|week|month|year|people|person|%|[-/.,]\d)))",
    re.IGNORECASE,
)


def _statements(text: str) -> list[str]:
    return [
        sentence
        for sentence in _SENTENCE.findall(text)
        if not (sentence.rstrip().endswith("?") or _NEGATION.search(sentence))
    ]


def claims_in(text: str) -> set[Claim]:
    """The claims the statements of `text` make (questions and negations make none)."""
    found: set[Claim] = set()
    for sentence in _statements(text):
        found.update(claim for claim, says in _SAYS.items() if says.search(sentence))
    return found


def times_in(text: str) -> list[frozenset[int]]:
    """Each time of day in `text`, as the minutes after midnight it may mean."""
    found: list[frozenset[int]] = []
    for match in _TIME.finditer(text):
        if match["h12"] is not None:
            hour = int(match["h12"]) % 12 + (12 if match["half"].lower() == "p" else 0)
            found.append(frozenset({hour * 60 + int(match["m12"] or 0)}))
        elif match["bare"] is not None:
            hour = int(match["bare"]) % 12
            found.append(frozenset({hour * 60, (hour + 12) * 60}))
        else:
            hour, minute = int(match["h24"]), int(match["m24"])
            both = {hour * 60 + minute, (hour + 12) * 60 + minute} if hour < 12 else set()
            found.append(frozenset(both or {hour * 60 + minute}))
    return found


def unbacked_times(
    text: str, tool_calls: Sequence[Mapping[str, Any]], known: str
) -> list[frozenset[int]]:
    """Times the statements of `text` name that neither `known` nor a tool result shows."""
    named = [t for s in _statements(text) for t in times_in(s)]
    if not named:  # most replies name none: the instructions need not be read
        return []
    backing = "\n".join(
        [known, *(str(c.get("result") or "") for c in tool_calls if not c.get("error"))]
    )
    seen: set[int] = set().union(*times_in(backing))
    return [t for t in named if not t & seen]


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
    text: str,
    tool_calls: Sequence[Mapping[str, Any]],
    standing: Iterable[str] = (),
    known: str | None = None,
) -> set[Claim]:
    """What `text` claims that did not happen; with `known` (what the agent was told), also
    whether it names a time nobody gave it."""
    wrong = claims_in(text) - backed(tool_calls, standing)
    if known is not None and unbacked_times(text, tool_calls, known):
        wrong.add(Claim.TIME)
    return wrong


def facts(claims: Iterable[Claim], tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """The note that sends the model back: what its reply claims that did not happen."""
    claims = set(claims)
    done = [str(call.get("name")) for call in tool_calls if not call.get("error")]
    did = f"the tools that ran were: {', '.join(done)}" if done else "no tool did anything"
    notes = []
    if claims - {Claim.TIME}:
        said = ", ".join(sorted(c.value.replace("_", " ") for c in claims - {Claim.TIME}))
        notes.append(f"your reply says {said}, but this turn {did}, so that did not happen.")
    if Claim.TIME in claims:
        notes.append(
            "your reply names a time that no tool result and nothing in your instructions "
            "shows. Find open times with check_availability before offering or agreeing to one."
        )
    return (
        f"Check before sending: {' '.join(notes)} Write the reply again, saying only what the "
        "tool results show. If you meant to do it and the customer asked for it, call the tool "
        "first."
    )
