"""Tests for agent.fastpath: keyword and revocation detection that runs without the model."""

from __future__ import annotations

import pytest

from agent.fastpath import Classification, Keyword, classify, classify_batch
from agent.language import language_of

# --- Opt-out ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "matched"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        (" stop ", "stop"),
        ("Stop.", "stop"),
        ("STOP!!", "stop"),
        ("“STOP”", "stop"),
        ("'stop'", "stop"),
        ("🛑 STOP 🛑", "stop"),
        ("ＳＴＯＰ", "stop"),
        ("STOPALL", "stopall"),
        ("Stop All", "stop all"),
        ("stop   all", "stop all"),
        ("UNSUBSCRIBE", "unsubscribe"),
        ("Cancel", "cancel"),
        ("CANCEL!", "cancel"),
        ("END", "end"),
        ("Quit", "quit"),
        ("REVOKE", "revoke"),
        ("OPTOUT", "optout"),
        ("opt out", "opt out"),
        ("Opt-Out", "opt-out"),
        ("opt-out.", "opt-out"),
    ],
)
def test_exact_opt_out_keywords(body: str, matched: str) -> None:
    assert classify(body) == Classification(Keyword.OPT_OUT, matched, natural_language=False)


@pytest.mark.parametrize(
    "body",
    [
        "stop texting me",
        "Stop texting me!",
        "please stop messaging me",
        "don't text me anymore",
        "Don’t text me anymore",
        "dont text me",
        "do not contact me",
        "Never text me again",
        "remove me from your list",
        "Please remove me from your texting list",
        "remove me",
        "unsubscribe me",
        "take me off your list",
        "take me off",
        "no more texts",
        "No more reminders please",
        "leave me alone",
        "stop sending me messages",
        "stop sending these",
        "STOP ALL MESSAGES",
        "I want to stop getting these texts",
        "I don't want any more texts",
        "stop contacting me",
        "Quit texting me!!",
        "please stop texting, thanks",
        "I want to opt out",
        "I revoke my consent",
        "I withdraw consent",
        "stop please",
        "Please STOP",
        "stop it",
        "ok stop",
        "STOP STOP STOP",
        "Wrong person. STOP",
        "Who is this? Stop!",
        "who is this\nSTOP",
        "I didn't sign up for this, stop",
        "Not interested, unsubscribe me",
        "why don't you stop texting me",
        "if you don't stop texting me I'll report you",
    ],
)
def test_natural_language_revocations(body: str) -> None:
    result = classify(body)
    assert result.keyword is Keyword.OPT_OUT
    assert result.natural_language
    assert result.matched


@pytest.mark.parametrize(
    "body",
    [
        # Appointment talk that merely contains a keyword.
        "I can't stop by tomorrow",
        "can I cancel my appointment?",
        "I need to cancel",
        "cancel my 3pm",
        "Cancel. I'm sick",
        "the bus stop",
        "stop by at 5?",
        "My husband will stop by to pay",
        "end of the day works",
        "Is this the end?",
        "quit smoking consult",
        "don't cancel it",
        "Non-stop week, sorry",
        "remove me from the waiting list",
        # A preference about the messages, not a revocation.
        "stop texting me before 8am",
        "don't text me before 9am",
        "stop calling me, just text",
        "stop texting my husband, text me instead",
        "Can you stop the reminder for Friday?",
        # Negated.
        "please don't stop the reminders",
        "I don't want to unsubscribe",
        "I didn't mean to opt out",
        # Ambiguous: left to the model, which may ask.
        "Stop, I meant Thursday",
        # An iMessage reaction quoting our own message.
        "Liked “Reply STOP to opt out”",
        "",
        "   ",
    ],
)
def test_not_an_opt_out(body: str) -> None:
    assert classify(body).keyword is not Keyword.OPT_OUT


# --- Opt-in, help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("START", Classification(Keyword.OPT_IN, "start", natural_language=False)),
        ("start.", Classification(Keyword.OPT_IN, "start", natural_language=False)),
        ("Unstop", Classification(Keyword.OPT_IN, "unstop", natural_language=False)),
        ("SUBSCRIBE", Classification(Keyword.OPT_IN, "subscribe", natural_language=False)),
        ("resume", Classification(Keyword.OPT_IN, "resume", natural_language=False)),
        ("HELP", Classification(Keyword.HELP, "help", natural_language=False)),
        ("help!", Classification(Keyword.HELP, "help", natural_language=False)),
        ("Info", Classification(Keyword.HELP, "info", natural_language=False)),
        ("help me reschedule", Classification(Keyword.NONE, None, natural_language=False)),
        ("start time?", Classification(Keyword.NONE, None, natural_language=False)),
        ("more info on whitening", Classification(Keyword.NONE, None, natural_language=False)),
    ],
)
def test_opt_in_and_help(body: str, expected: Classification) -> None:
    assert classify(body) == expected


# --- Confirm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "matched"),
    [
        ("Y", "y"),
        ("y", "y"),
        ("Y!", "y"),
        ("YES", "yes"),
        ("yes.", "yes"),
        ("Yes!!", "yes"),
        ("Yep", "yep"),
        ("yup", "yup"),
        ("Yeah", "yeah"),
        ("ya", "ya"),
        ("C", "c"),
        ("Confirm", "confirm"),
        ("CONFIRMED", "confirmed"),
        ("ok confirm", "ok confirm"),
        ("OK  confirm", "ok confirm"),
        ("Yes, confirmed!", "yes confirmed"),
        ("yes confirm", "yes confirm"),
        ("Yes please", "yes please"),
        ("Yes 👍", "yes"),
        ("👍", "👍"),
        ("👍🏽", "👍"),
        ("✅", "✅"),
    ],
)
def test_confirm(body: str, matched: str) -> None:
    assert classify(body) == Classification(Keyword.CONFIRM, matched, natural_language=False)


@pytest.mark.parametrize(
    "body",
    [
        "Y?",
        "yes?",
        # "ok" acknowledges anything; the model decides what it answers.
        "ok",
        "OK",
        "yes but can we move it to 4?",
        "Yes, at 4 instead",
        "maybe",
        "no",
        "N",
        "❤️",
    ],
)
def test_not_a_confirmation(body: str) -> None:
    assert classify(body) == Classification(Keyword.NONE, None, natural_language=False)


# --- classify_batch ---------------------------------------------------------------------------

NONE = Classification(Keyword.NONE, None, natural_language=False)
CONFIRM_Y = Classification(Keyword.CONFIRM, "y", natural_language=False)
STOP = Classification(Keyword.OPT_OUT, "stop", natural_language=False)


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        pytest.param([], NONE, id="empty"),
        pytest.param(["Y"], CONFIRM_Y, id="single"),
        pytest.param(["Y", "Y"], CONFIRM_Y, id="same-keyword"),
        pytest.param(["Y", "yes"], CONFIRM_Y, id="same-keyword-different-words"),
        pytest.param(["Y", "HELP"], NONE, id="different-keywords"),
        pytest.param(["Y", "can we do 4 instead?"], NONE, id="keyword-and-text"),
        pytest.param(["hi", "STOP"], STOP, id="stop-last"),
        pytest.param(["STOP", "START"], STOP, id="stop-then-start"),
        pytest.param(["Y", "STOP", "Y"], STOP, id="stop-in-the-middle"),
        pytest.param(
            ["running late", "actually please stop texting me"],
            Classification(Keyword.OPT_OUT, "stop texting me", natural_language=True),
            id="natural-opt-out",
        ),
        pytest.param(["Y", "  "], CONFIRM_Y, id="blank-body-ignored"),
        pytest.param(["", " "], NONE, id="only-blank"),
    ],
)
def test_classify_batch(bodies: list[str], expected: Classification) -> None:
    assert classify_batch(bodies) == expected


def test_batch_accepts_any_sequence() -> None:
    assert classify_batch(("yes", "Y")).keyword is Keyword.CONFIRM


@pytest.mark.parametrize(
    "text",
    [
        "my face is swelling",
        "My cheek is swollen and it hurts. Can you see me today?",
        "I can't breathe well since the extraction",
        "the bleeding won't stop",
        "Water is pouring through my ceiling!!",
        "pipe burst under the sink",
        "I smell gas in the kitchen",
        "there are sparks coming from the panel",
        "the sewage is backing up into the tub",
        "se me hincha la cara",
        "huele a gas en la casa",
    ],
)
def test_emergencies_are_recognised(text: str) -> None:
    assert classify(text).keyword is Keyword.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "The swelling in my face is gone, not swollen anymore",
        "no leak, water is not pouring anymore",
        "Had a burst pipe last week, can you check the repair?",
        "Is there anything I should do about bleeding after the extraction?",
        "Can I come in Thursday?",
    ],
)
def test_what_only_mentions_an_emergency_is_not_one(text: str) -> None:
    assert classify(text).keyword is not Keyword.EMERGENCY


def test_in_a_burst_an_opt_out_beats_an_emergency_and_an_emergency_beats_the_rest() -> None:
    assert classify_batch(["water is pouring in", "STOP"]).keyword is Keyword.OPT_OUT
    assert classify_batch(["Y", "water is pouring in"]).keyword is Keyword.EMERGENCY


@pytest.mark.parametrize(
    ("texts", "language"),
    [
        (["Sí"], "es"),
        (["Hola, ¿puedo cambiar mi cita?"], "es"),
        (["se me hincha la cara", "y me duele mucho"], "es"),
        (["Y"], "en"),
        (["yes"], "en"),
        (["I need help with my appointment"], "en"),
        (["👍"], "en"),
    ],
)
def test_the_language_of_a_burst_picks_the_fixed_replies(texts: list[str], language: str) -> None:
    assert language_of(iter(texts)) == language
