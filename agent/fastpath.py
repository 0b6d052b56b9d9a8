"""Classify inbound SMS that must or can be answered without the language model.

Opt-out handling is a legal duty, not a convenience: carriers require the standard keywords
(STOP, UNSUBSCRIBE, ...) to work, and the FCC's 2024 TCPA rule lets consumers revoke consent
"in any reasonable manner", so plain-language requests such as "please stop texting me" count
too. The rules here lean towards honouring a revocation, but stay away from ordinary appointment
talk ("I can't stop by", "cancel my 3pm") that merely contains a keyword. Anything ambiguous
is classified NONE and left to the model, which sees the conversation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Classification", "Keyword", "classify", "classify_batch"]


class Keyword(StrEnum):
    """What an inbound message asks for, when it can be answered without the model."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    EMERGENCY = "emergency"
    NONE = "none"


@dataclass(frozen=True)
class Classification:
    """Result of classifying one message (or one burst of messages)."""

    keyword: Keyword
    matched: str | None
    natural_language: bool


_NO_MATCH = Classification(Keyword.NONE, None, natural_language=False)

# --- Vocabulary -------------------------------------------------------------------------------

_OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
    | {"opt out", "opt-out"}
)
_OPT_OUT_WORDS = frozenset(keyword for keyword in _OPT_OUT_KEYWORDS if " " not in keyword)
# CANCEL, END and QUIT are opt-out keywords only when sent alone: inside a sentence they are
# nearly always about an appointment ("Cancel. I'm sick.") rather than about the texts.
_STRONG_OPT_OUT = frozenset({"stop", "stopall", "unsubscribe", "optout", "revoke"})
# Words that can accompany a strong keyword without changing what it means ("stop please").
_FILLER = frozenset(
    {"please", "pls", "plz", "now", "it", "already", "just", "ok", "okay", "no", "thanks"}
    | {"thank", "you", "thx", "ty", "immediately", "asap", "right", "seriously", "again"}
)
_OPT_IN_KEYWORDS = frozenset({"start", "unstop", "subscribe", "resume"})
_HELP_KEYWORDS = frozenset({"help", "info"})
# "ok" is deliberately absent: people send it to acknowledge anything (a reschedule offer, a
# question, a running-late notice), so reading it as a confirmation could book a slot the
# customer never agreed to. The model sees the context and decides.
_CONFIRM_PHRASES = frozenset(
    {"y", "yes", "yep", "yup", "yeah", "yea", "ya", "c", "confirm", "confirmed"}
    | {"yes confirm", "yes confirmed", "y confirm", "ok confirm", "ok confirmed", "okay confirm"}
    | {"confirm yes", "i confirm", "yes please", "yes thanks", "yes thank you", "confirmed thanks"}
    | {"si", "sí", "confirmo", "si confirmo", "sí confirmo", "sí gracias", "si gracias"}
)
_CONFIRM_EMOJI = frozenset({"👍", "✅", "✔", "☑"})
_EMOJI_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")

# --- Natural-language revocations -------------------------------------------------------------

_ME = r"(?:me|us|this (?:number|phone|cell)|my (?:number|phone|cell(?: phone)?))"
_TEXTS = (
    r"(?:texts|text messages?|txts|messages|msgs|sms(?:es)?|spam|reminders|notifications|alerts"
    r"|these(?: texts| messages)?)"
)
_TEXTS_STRICT = r"(?:texts|text messages|txts|messages|msgs|sms(?:es)?|spam)"
_DETERMINERS = r"(?:(?:any|these|those|the|your|ur|all|all of|of|more|this)\s+)*"
_CONTACT_VERBS = (
    r"(?:texting|txting|texing|messaging|msging|contacting|spamming|bothering|harassing"
    r"|hassling|pestering)"
)
_DONT = r"(?:do\s*n'?t|do not)"
# "Stop texting me before 8am" is a scheduling preference, not a revocation: leave it to the
# model.
_NOT_A_SCHEDULE = (
    r"(?!\s+(?:before|after|until|till|til|at|on|during|between|so early|so late|this early"
    r"|this late|early|late|past)\b)"
)
# What may follow a revocation that has no object ("please stop texting, thanks").
_TAIL = (
    r"(?=\s*(?:[.!,;?]|$|(?:please|pls|plz|now|already|immediately|asap|anymore|any more|ever"
    r"|thanks|thank you|thx|ok|okay)\b))"
)

_REVOCATIONS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"\b(?:stop|quit|cease)\s+{_CONTACT_VERBS}\s+{_ME}\b{_NOT_A_SCHEDULE}",
        rf"\b(?:stop|quit|cease)\s+{_CONTACT_VERBS}{_TAIL}",
        rf"\b(?:stop|quit|cease)\s+sending\s+(?:{_ME}\s+)?{_DETERMINERS}{_TEXTS}\b"
        rf"{_NOT_A_SCHEDULE}",
        rf"\b(?:stop|quit|cease)\s+sending(?:\s+{_ME})?{_TAIL}",
        rf"\b(?:stop|quit)\s+(?:receiving|getting)\s+{_DETERMINERS}{_TEXTS}\b",
        rf"\bstop\s+{_DETERMINERS}{_TEXTS}\b",
        rf"\b(?:{_DONT}|never)\s+(?:ever\s+)?(?:text|txt|message|msg|contact|sms|spam|bother)"
        rf"\s+{_ME}\b{_NOT_A_SCHEDULE}",
        rf"\b(?:{_DONT}|no longer)\s+want\s+(?:to\s+(?:receive|get)\s+)?{_DETERMINERS}"
        rf"{_TEXTS_STRICT}\b",
        r"\b(?:remove|delete|take)\s+(?:me|my (?:number|phone number|cell|info|details))"
        r"\s+(?:from|off(?: of)?)\s+(?:(?:your|the|this|ur|all|all of your|all your|any)\s+)?"
        r"(?:(?:text|texting|txt|sms|mailing|contact|message|messaging|marketing|call|calling"
        r"|distribution|email)\s+)?(?:lists?|contacts|database|system|texts|messages)\b",
        rf"\b(?:remove|delete|take)\s+(?:me|my number)(?:\s+off)?{_TAIL}",
        r"\bunsubscribe\b",
        r"\bopt(?:\s|-)?out\b",
        r"\brevoke\b",
        r"\bwithdraw\s+(?:my\s+)?consent\b",
        rf"\b(?:{_DONT}|no longer)\s+consent\b",
        rf"\bno more\s+(?:{_TEXTS}|texting|txting|messaging)\b",
        r"\bleave me alone\b",
    )
)

# Words that, just before a phrase, reverse it ("please don't stop the reminders")...
_NEGATIONS = frozenset(
    {"not", "never", "dont", "didnt", "doesnt", "wont", "wouldnt", "shouldnt", "dnt"}
)
# ...unless the sentence is a demand phrased as a question or a threat ("why don't you stop
# texting me", "if you don't stop texting me").
_NEGATION_OVERRIDES = frozenset({"why", "if", "unless"})
_NEGATION_WINDOW = 4
# Words that may sit between a negation and the phrase it negates.
_NEGATION_BRIDGE = frozenset(
    {"want", "wanna", "need", "mean", "meant", "ask", "asked", "to", "you", "ever", "just"}
    | {"going", "gonna", "please", "i", "really", "for", "have"}
)

# iMessage reactions reach SMS as 'Liked "<our message>"'; the quoted text is ours, so a
# reaction to "Reply STOP to opt out" must not read as a revocation.
_REACTION_RE = re.compile(
    r"^(?:liked|loved|disliked|laughed at|emphasi[sz]ed|questioned|reacted \S+ to)\s+\".*\"$",
    re.S,
)
_SENTENCE_SPLIT_RE = re.compile(r"[.!?;\n]+|\s[-–—]+\s")
_CLAUSE_BREAK_RE = re.compile(r"[,.!?;:\n]")
_WHITESPACE_RE = re.compile(r"\s+")
_TOKEN_RE = re.compile(r"[\w']+")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"'})

# --- Normalisation ----------------------------------------------------------------------------


def _prepare(body: str) -> str:
    """Fold case, width and quote variants while keeping line breaks and inner punctuation."""
    # NFKC turns full-width "ＳＴＯＰ" and ligatures into plain letters.
    return unicodedata.normalize("NFKC", body).translate(_QUOTES).casefold()


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def _strip_edges(text: str) -> str:
    """Drop surrounding punctuation, quotes, emoji and whitespace."""
    start, end = 0, len(text)
    while start < end and not _is_word_char(text[start]):
        start += 1
    while end > start and not _is_word_char(text[end - 1]):
        end -= 1
    return text[start:end]


def _core(text: str) -> str:
    return _strip_edges(_WHITESPACE_RE.sub(" ", text).strip())


def _merge_phrases(text: str) -> str:
    """Spell multi-word keywords as one token so that they can be checked word by word."""
    text = re.sub(r"\bstop all\b", "stopall", text)
    return re.sub(r"\bopt(?:\s|-)?out\b", "optout", text)


# --- Opt-out ----------------------------------------------------------------------------------


def _is_keyword_sentence(sentence: str) -> bool:
    """Only opt-out keywords, at least one of them strong, plus polite filler ("stop please")."""
    tokens = _TOKEN_RE.findall(_merge_phrases(sentence))
    return any(token in _STRONG_OPT_OUT for token in tokens) and all(
        token in _OPT_OUT_WORDS or token in _FILLER for token in tokens
    )


def _is_negated(text: str, start: int) -> bool:
    # Only the same clause counts: "Not interested, unsubscribe me" is not negated.
    clause = _CLAUSE_BREAK_RE.split(text[:start])[-1]
    before = [t.replace("'", "") for t in _TOKEN_RE.findall(clause)][-_NEGATION_WINDOW:]
    if any(token in _NEGATION_OVERRIDES for token in before):
        return False
    negations = [i for i, token in enumerate(before) if token in _NEGATIONS]
    # The negation must govern the phrase ("don't want to unsubscribe"), not a neighbouring
    # word ("not interested unsubscribe me").
    return bool(negations) and all(
        token in _NEGATION_BRIDGE for token in before[negations[-1] + 1 :]
    )


def _revocation_phrase(text: str) -> str | None:
    for pattern in _REVOCATIONS:
        for match in pattern.finditer(text):
            if not _is_negated(text, match.start()):
                return match.group(0).strip()
    return None


def _keyword_candidates(prepared: str, core: str) -> list[str]:
    """The whole message, each sentence, and each sentence's last clause.

    This catches "Stop please", "Wrong person. STOP" and "who is this, stop". A leading
    "Stop, ..." is not split off: "Stop, I meant Thursday" is not a revocation, and the model
    can ask when it is unclear.
    """
    candidates = [core]
    for sentence in _SENTENCE_SPLIT_RE.split(prepared):
        candidates.extend((_core(sentence), _core(sentence.rsplit(",", 1)[-1])))
    return [candidate for candidate in candidates if candidate]


def _opt_out(prepared: str, core: str) -> Classification | None:
    if core in _OPT_OUT_KEYWORDS:
        return Classification(Keyword.OPT_OUT, core, natural_language=False)
    for candidate in _keyword_candidates(prepared, core):
        if _is_keyword_sentence(candidate):
            return Classification(Keyword.OPT_OUT, candidate, natural_language=True)
    phrase = _revocation_phrase(_WHITESPACE_RE.sub(" ", prepared))
    if phrase is not None:
        return Classification(Keyword.OPT_OUT, phrase, natural_language=True)
    return None


# --- Other keywords ---------------------------------------------------------------------------


def _is_confirm_emoji(prepared: str) -> str | None:
    symbols = _EMOJI_MODIFIERS.sub("", _WHITESPACE_RE.sub("", prepared))
    if symbols and all(symbol in _CONFIRM_EMOJI for symbol in symbols):
        return symbols[0]
    return None


def _ends_with_question(prepared: str) -> bool:
    return prepared.rstrip().endswith("?")


def _other_keyword(prepared: str, core: str) -> Classification | None:
    if core in _OPT_IN_KEYWORDS:
        return Classification(Keyword.OPT_IN, core, natural_language=False)
    if core in _HELP_KEYWORDS:
        return Classification(Keyword.HELP, core, natural_language=False)
    words = " ".join(_TOKEN_RE.findall(core))  # "Yes, confirmed" == "yes confirmed"
    # "Y?" reads as a question, not as an answer.
    if words in _CONFIRM_PHRASES and not _ends_with_question(prepared):
        return Classification(Keyword.CONFIRM, words, natural_language=False)
    emoji = _is_confirm_emoji(prepared)
    if emoji is not None:
        return Classification(Keyword.CONFIRM, emoji, natural_language=False)
    return None


# --- Emergencies ------------------------------------------------------------------------------

# Someone in danger or a home being damaged right now: a person must know at once, and the
# customer must hear to call for help, whatever a model would have made of it.
_EMERGENCIES = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # Health (dental and medical offices).
        r"\b(face|jaw|cheek|throat|tongue|eye)\b[^.!?]{0,20}\b(is |are |keeps )?"
        r"(swelling|swollen)\b",
        r"\b(swelling|swollen)\b[^.!?]{0,20}\b(face|jaw|cheek|throat|tongue|eye)\b",
        r"\b(can'?t|cannot|hard to|trouble|difficulty) (breathe|breathing|swallow|swallowing)\b",
        r"\bbleeding\b[^.!?]{0,20}\b(won'?t|will not|doesn'?t|does not|can'?t) stop\b",
        r"\b(chest pain|unconscious|passed out|knocked out (a |my )?tooth|broken jaw)\b",
        r"\b(severe|unbearable|excruciating) (pain|bleeding)\b",
        # Homes (plumbing, HVAC, electrical).
        r"\bwater\b[^.!?]{0,20}\b(pouring|gushing|flooding|spraying|coming through)\b",
        r"\b(burst|broken) (pipe|water line)\b|\bpipe\b[^.!?]{0,10}\bburst\b",
        r"\b(gas leak|smell(s|ing)? (of |like )?gas|carbon monoxide|co alarm)\b",
        r"\b(sparks|sparking|smoke|on fire|burning smell|electrical fire)\b",
        r"\b(sewage|sewer)\b[^.!?]{0,20}\b(backing up|overflowing|flooding)\b",
        r"\b(house|basement|kitchen|bathroom|room) is flooding\b|\bflooding (the|my|our)\b",
        # Spanish.
        r"\b(cara|mejilla|garganta) (muy )?hinchada\b|\bse me (est[áa] )?hinch(a|ando)\b",
        r"\bno puedo respirar\b|\bsangrado (que )?no (se )?(para|detiene)\b",
        r"\b(fuga de gas|huele a gas|se est[áa] inundando|inundaci[óo]n)\b",
    )
]
_CALM = re.compile(
    r"\b(no|not|isn'?t|aren'?t|wasn'?t|no longer|never|without|any more|anymore|gone|"
    r"went down|better|stopped|fixed|yesterday|last (week|month|year))\b",
    re.IGNORECASE,
)


def _emergency(prepared: str) -> Classification | None:
    text = _WHITESPACE_RE.sub(" ", prepared)
    for pattern in _EMERGENCIES:
        for match in pattern.finditer(text):
            # "The swelling in my face is gone" is not an emergency: a sentence that says it is
            # over, or was not so, does not count.
            start = max(text.rfind(mark, 0, match.start()) for mark in ".!?") + 1
            ends = [i for i in (text.find(mark, match.end()) for mark in ".!?") if i >= 0]
            if _CALM.search(text[start : min(ends, default=len(text))]):
                continue
            return Classification(Keyword.EMERGENCY, match.group(0).strip(), natural_language=True)
    return None


# --- Public API -------------------------------------------------------------------------------


def classify(body: str) -> Classification:
    """Classify one inbound message."""
    prepared = _prepare(body)
    core = _core(prepared)
    if _REACTION_RE.match(_WHITESPACE_RE.sub(" ", prepared).strip()):
        return _NO_MATCH
    return (
        _opt_out(prepared, core)
        or _emergency(prepared)
        or _other_keyword(prepared, core)
        or _NO_MATCH
    )


def classify_batch(bodies: Sequence[str]) -> Classification:
    """Classify the messages a customer sent in one burst as a single request.

    Any opt-out wins, wherever it is in the burst: missing a STOP is never acceptable; then any
    emergency (a person must see it at once, whatever else was said). Otherwise
    the burst only counts as a keyword when every non-blank message says the same thing
    ("Y", "Y"); blank bodies (a picture with no text) carry no intent and are ignored.
    """
    results = [classify(body) for body in bodies if body.strip()]
    for wins in (Keyword.OPT_OUT, Keyword.EMERGENCY):
        for result in results:
            if result.keyword is wins:
                return result
    if results and len({result.keyword for result in results}) == 1:
        return results[0]
    return _NO_MATCH
