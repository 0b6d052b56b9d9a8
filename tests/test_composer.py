"""Tests for agent.composer: carrier segment counting, GSM-7 normalisation, Markdown and links."""

from __future__ import annotations

import pytest

from agent.composer import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    ComposedSms,
    Encoding,
    SegmentInfo,
    compose_sms,
    count_segments,
    estimate_cost,
    normalize_gsm,
    strip_markdown,
)

GSM7 = Encoding.GSM7
UCS2 = Encoding.UCS2
EMOJI = "😀"  # outside the BMP: one surrogate pair, two UTF-16 code units

# --- count_segments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", SegmentInfo(GSM7, 0, 0, 160), id="empty"),
        pytest.param("a", SegmentInfo(GSM7, 1, 1, 160), id="one-char"),
        pytest.param("a" * 160, SegmentInfo(GSM7, 1, 160, 160), id="gsm-160"),
        pytest.param("a" * 161, SegmentInfo(GSM7, 2, 161, 153), id="gsm-161"),
        pytest.param("a" * 306, SegmentInfo(GSM7, 2, 306, 153), id="gsm-306"),
        pytest.param("a" * 307, SegmentInfo(GSM7, 3, 307, 153), id="gsm-307"),
        pytest.param("a" * 459, SegmentInfo(GSM7, 3, 459, 153), id="gsm-459"),
        pytest.param("a" * 460, SegmentInfo(GSM7, 4, 460, 153), id="gsm-460"),
        # 152 + 2 = 154 septets still fits the 160-septet single segment.
        pytest.param("a" * 152 + "€", SegmentInfo(GSM7, 1, 154, 160), id="euro-154-single"),
        pytest.param("a" * 158 + "€", SegmentInfo(GSM7, 1, 160, 160), id="euro-at-160"),
        pytest.param("a" * 159 + "€", SegmentInfo(GSM7, 2, 161, 153), id="euro-pushes-to-2"),
        # 306 septets would fit 2 x 153, but the escape and the euro sign cannot be split, so
        # the euro moves to segment 2, leaving one 'a' for segment 3.
        pytest.param(
            "a" * 152 + "€" + "a" * 152, SegmentInfo(GSM7, 3, 306, 153), id="euro-straddles-153"
        ),
        pytest.param(
            "a" * 151 + "€" + "a" * 153, SegmentInfo(GSM7, 2, 306, 153), id="euro-fits-exactly"
        ),
        pytest.param("{}" * 40, SegmentInfo(GSM7, 1, 160, 160), id="40-brace-pairs"),
        pytest.param("{}" * 40 + "a", SegmentInfo(GSM7, 2, 161, 153), id="40-brace-pairs-plus-one"),
        pytest.param("あ" * 70, SegmentInfo(UCS2, 1, 70, 70), id="ucs2-70"),
        pytest.param("あ" * 71, SegmentInfo(UCS2, 2, 71, 67), id="ucs2-71"),
        pytest.param("あ" * 134, SegmentInfo(UCS2, 2, 134, 67), id="ucs2-134"),
        pytest.param("あ" * 135, SegmentInfo(UCS2, 3, 135, 67), id="ucs2-135"),
        pytest.param("a" * 69 + "ő", SegmentInfo(UCS2, 1, 70, 70), id="one-accent-forces-ucs2"),
        pytest.param("a" * 70 + "ő", SegmentInfo(UCS2, 2, 71, 67), id="accent-71"),
        pytest.param("a" * 68 + EMOJI, SegmentInfo(UCS2, 1, 70, 70), id="emoji-counts-2"),
        pytest.param("a" * 69 + EMOJI, SegmentInfo(UCS2, 2, 71, 67), id="emoji-71"),
        pytest.param(EMOJI * 35, SegmentInfo(UCS2, 1, 70, 70), id="35-emoji"),
        pytest.param(EMOJI * 36, SegmentInfo(UCS2, 2, 72, 67), id="36-emoji"),
        # 134 units would fit 2 x 67, but the surrogate pair at 67/68 moves whole.
        pytest.param(
            "x" * 66 + EMOJI + "x" * 66, SegmentInfo(UCS2, 3, 134, 67), id="emoji-straddles-67"
        ),
        pytest.param(
            "x" * 65 + EMOJI + "x" * 67, SegmentInfo(UCS2, 2, 134, 67), id="emoji-fits-exactly"
        ),
    ],
)
def test_count_segments(text: str, expected: SegmentInfo) -> None:
    assert count_segments(text) == expected


def test_gsm7_tables_match_3gpp_23_038() -> None:
    # 128 code points minus the escape to the extension table.
    assert len(GSM7_BASIC) == 127
    assert sorted(GSM7_EXTENSION) == sorted("\f^{}\\[~]|€")
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    "text",
    [
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
        " !\"#¤%&'()*+,-./0123456789:;<=>?",
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
    ],
)
def test_basic_characters_cost_one_septet(text: str) -> None:
    info = count_segments(text)
    assert (info.encoding, info.units) == (GSM7, len(text))


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count_segments("a" + char) == SegmentInfo(GSM7, 1, 3, 160)


@pytest.mark.parametrize("char", ["’", "“", "—", "…", "ç", "á", "ő", "王", "`", EMOJI])
def test_non_gsm_characters_force_ucs2(char: str) -> None:
    assert count_segments("Hello " + char).encoding is UCS2


# --- normalize_gsm ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("It’s", "It's"),
        ("‘quoted’ ‚low‛", "'quoted' 'low'"),
        ("“Hi” „there‟", '"Hi" "there"'),
        ("9–5 — or − 1", "9-5 - or - 1"),
        ("Wait…", "Wait..."),
        ("a\u00a0b\u202fc\u2009d\u3000e\tf", "a b c d e f"),
        ("• one\n◦ two", "- one\n- two"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
        ("ＯＫ！", "OK!"),
        ("Smile Dental™ ©2025", "Smile DentalTM (c)2025"),
        ("½ off", "1/2 off"),
        ("e\u0301", "é"),
        # No GSM-7 equivalent: kept, so the message is honestly UCS-2.
        ("Erdős Zsófia", "Erdős Zsófia"),
        ("Zoe\u0308", "Zoë"),
        ("王芳", "王芳"),
        (f"See you {EMOJI}", f"See you {EMOJI}"),
        ("👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"),
        ("stray\u200djoiner", "strayjoiner"),
        ("Plain ASCII stays: {curly} [square] €5", "Plain ASCII stays: {curly} [square] €5"),
    ],
)
def test_normalize_gsm(raw: str, expected: str) -> None:
    assert normalize_gsm(raw) == expected


def test_normalized_smart_quotes_stay_gsm7() -> None:
    assert count_segments("It’s").encoding is UCS2
    assert count_segments(normalize_gsm("It’s")) == SegmentInfo(GSM7, 1, 4, 160)


def test_normalize_gsm_never_drops_a_name() -> None:
    name = "Nguyễn Thị Ánh 💐"
    assert normalize_gsm(f"Hi {name}!") == f"Hi {name}!"


# --- strip_markdown ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("See you **Tuesday**", "See you Tuesday"),
        ("See you __Tuesday__", "See you Tuesday"),
        ("*really* soon", "really soon"),
        ("_really_ soon", "really soon"),
        ("***both***", "both"),
        ("~~Monday~~ Tuesday", "Monday Tuesday"),
        ("my_var_name and snake_case_words", "my_var_name and snake_case_words"),
        ("see https://ex.com/a_b_c/d_e", "see https://ex.com/a_b_c/d_e"),
        ("mail first_last@ex_ample.com", "mail first_last@ex_ample.com"),
        ("5 * 3 * 2 = 30", "5 * 3 * 2 = 30"),
        ("Use `snake_case_id`", "Use snake_case_id"),
        ("```python\nx = a_b\n```", "x = a_b"),
        ("# Your visit\nDetails", "Your visit\nDetails"),
        ("### Hours ###", "Hours"),
        ("#1 in town", "#1 in town"),
        ("> quoted\n>> nested", "quoted\nnested"),
        ("[book](https://ex.com/x)", "book (https://ex.com/x)"),
        ("[https://ex.com](https://ex.com)", "https://ex.com"),
        ("[ex.com](https://ex.com)", "https://ex.com"),
        ('[book](https://ex.com/x "Book now")', "book (https://ex.com/x)"),
        ("![map](https://ex.com/m.png)", "map (https://ex.com/m.png)"),
        ("<https://ex.com/x>", "https://ex.com/x"),
        ("[Call us](tel:+15551234567)", "Call us (+15551234567)"),
        ("[555-123-4567](tel:+15551234567)", "555-123-4567"),
        ("[email us](mailto:hi@ex.com)", "email us (hi@ex.com)"),
        ("- one\n* two\n+ three", "- one\n- two\n- three"),
        ("  - nested", "- nested"),
        ("- [x] done", "- done"),
        ("1. first\n2. second\n3) third", "1. first\n2. second\n3) third"),
        (
            "| Day | Hours |\n|---|:--:|\n| Mon | 9-5 |\n| Tue | 10-6 |",
            "Day, Hours\nMon, 9-5\nTue, 10-6",
        ),
        ("before\n\n---\n\nafter", "before\n\nafter"),
        ("Title\n=====\ntext", "Title\n\ntext"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("  padded  \n", "padded"),
        ("line<br>break", "line\nbreak"),
        (r"\*literal\* and \_this\_", "*literal* and _this_"),
    ],
)
def test_strip_markdown(markdown: str, plain: str) -> None:
    assert strip_markdown(markdown) == plain


# --- compose_sms ------------------------------------------------------------------------------


def test_compose_plain_reply() -> None:
    sms = compose_sms("It’s **Tuesday** at 3pm — see you then…")
    assert sms == ComposedSms(
        body="It's Tuesday at 3pm - see you then...",
        encoding=GSM7,
        segments=1,
        truncated=False,
        removed_links=(),
    )


def test_compose_keeps_emoji_as_ucs2() -> None:
    sms = compose_sms(f"See you **soon** {EMOJI}")
    assert (sms.body, sms.encoding, sms.segments) == (f"See you soon {EMOJI}", UCS2, 1)


@pytest.mark.parametrize(
    ("text", "allowed", "body", "removed"),
    [
        pytest.param(
            "Book here (https://evil.com/x). Thanks!",
            (),
            "Book here. Thanks!",
            ("https://evil.com/x",),
            id="parenthesised-link-removed",
        ),
        pytest.param(
            "Book online: https://evil.com/x",
            (),
            "Book online",
            ("https://evil.com/x",),
            id="dangling-colon-removed",
        ),
        pytest.param(
            "Book [here](https://ex.com/x) today.",
            ("ex.com",),
            "Book here (https://ex.com/x) today.",
            (),
            id="markdown-link-allowed",
        ),
        pytest.param(
            "Book [here](https://ex.com/x) today.",
            (),
            "Book here today.",
            ("https://ex.com/x",),
            id="markdown-link-disallowed",
        ),
        pytest.param(
            "Book at https://book.ex.com/x or https://www.ex.com.",
            ("ex.com",),
            "Book at https://book.ex.com/x or https://www.ex.com.",
            (),
            id="subdomains-allowed",
        ),
        pytest.param(
            "Go to HTTPS://EX.COM/Path now",
            ("https://Ex.com/",),
            "Go to HTTPS://EX.COM/Path now",
            (),
            id="case-and-scheme-insensitive",
        ),
        pytest.param(
            "Try https://ex.com.evil.io/x now",
            ("ex.com",),
            "Try now",
            ("https://ex.com.evil.io/x",),
            id="lookalike-suffix",
        ),
        pytest.param(
            "Try https://notex.com now",
            ("ex.com",),
            "Try now",
            ("https://notex.com",),
            id="same-ending-other-domain",
        ),
        pytest.param(
            "Try https://ex.com@evil.com/x now",
            ("ex.com",),
            "Try now",
            ("https://ex.com@evil.com/x",),
            id="userinfo-trick",
        ),
        pytest.param(
            "Visit www.evil.com, bit.ly/abc123 or evil.ru today",
            ("ex.com",),
            "Visit, or today",
            ("www.evil.com", "bit.ly/abc123", "evil.ru"),
            id="bare-links",
        ),
        pytest.param(
            "Allowed ex.com/book and www.ex.com/faq",
            ("ex.com",),
            "Allowed ex.com/book and www.ex.com/faq",
            (),
            id="bare-allowed",
        ),
        pytest.param(
            "Email jane.doe@ex.co or ask Dr.Smith, e.g. at 9.30am",
            (),
            "Email jane.doe@ex.co or ask Dr.Smith, e.g. at 9.30am",
            (),
            id="not-links",
        ),
        pytest.param(
            "A https://evil.com/x and again https://evil.com/x",
            (),
            "A and again",
            ("https://evil.com/x",),
            id="reported-once",
        ),
    ],
)
def test_compose_links(
    text: str, allowed: tuple[str, ...], body: str, removed: tuple[str, ...]
) -> None:
    sms = compose_sms(text, allowed_link_hosts=allowed)
    assert (sms.body, sms.removed_links) == (body, removed)


def _sentences(count: int) -> str:
    return " ".join(f"Sentence number {i} is right here." for i in range(count))


def test_truncation_ends_on_sentence_boundary() -> None:
    text = _sentences(40)
    sms = compose_sms(text, max_segments=2)
    assert sms.truncated
    assert sms.segments == 2
    assert sms.body.endswith("here...")
    # What is kept is whole sentences of the original.
    assert text.startswith(sms.body.removesuffix("...") + ". ")
    assert len(sms.body) > 153  # the boundary is near the end of the budget, not the start


def test_truncation_falls_back_to_word_boundary() -> None:
    text = " ".join(["word"] * 200)
    sms = compose_sms(text, max_segments=1)
    assert sms.truncated
    assert sms.body == " ".join(["word"] * 31) + "..."
    assert count_segments(sms.body) == SegmentInfo(GSM7, 1, 157, 160)


def test_truncation_hard_cuts_one_long_token() -> None:
    sms = compose_sms("a" * 1000, max_segments=1)
    assert sms.body == "a" * 157 + "..."
    assert (sms.segments, sms.truncated) == (1, True)


def test_no_truncation_when_it_fits_exactly() -> None:
    sms = compose_sms("a" * 612, max_segments=4)
    assert (sms.body, sms.segments, sms.truncated) == ("a" * 612, 4, False)


@pytest.mark.parametrize("max_segments", [1, 2, 3, 4, 6])
@pytest.mark.parametrize(
    "filler", ["Sentence one here. ", "word ", "Price €5! ", f"Hi {EMOJI} ok. "]
)
def test_truncation_never_exceeds_budget(max_segments: int, filler: str) -> None:
    for length in range(1, 1400, 13):
        text = (filler * (length // len(filler) + 1))[:length]
        if not text.strip():
            continue
        sms = compose_sms(text, max_segments=max_segments)
        info = count_segments(sms.body)
        assert info.segments <= max_segments, (length, sms)
        assert (sms.segments, sms.encoding) == (info.segments, info.encoding)
        if sms.truncated:
            assert sms.body.endswith("...")
        else:
            assert sms.body == text.strip()


def test_truncation_may_switch_to_gsm7_when_the_emoji_is_cut() -> None:
    text = _sentences(12) + f" Bye {EMOJI}"
    sms = compose_sms(text, max_segments=2)
    assert (sms.truncated, sms.encoding, sms.segments) == (True, GSM7, 2)


@pytest.mark.parametrize(
    ("text", "signature", "body"),
    [
        ("See you Tuesday.", "- Bright Smile Dental", "See you Tuesday.\n- Bright Smile Dental"),
        ("See you Tuesday.", "Bright’s Plumbing", "See you Tuesday.\nBright's Plumbing"),
        ("See you Tuesday.", "   ", "See you Tuesday."),
        ("a" * 150, "- Bright Smile Dental", "a" * 150 + "\n- Bright Smile Dental"),
    ],
)
def test_signature_appended_when_it_fits(text: str, signature: str, body: str) -> None:
    assert compose_sms(text, signature=signature).body == body


def test_signature_dropped_when_it_does_not_fit() -> None:
    sms = compose_sms("a" * 155, max_segments=1, signature="- Bright Smile Dental")
    assert (sms.body, sms.segments) == ("a" * 155, 1)


def test_signature_never_pushes_over_budget() -> None:
    sms = compose_sms(_sentences(40), max_segments=2, signature="- Bright Smile Dental")
    assert sms.segments <= 2
    assert sms.truncated


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_blank_input_raises(text: str) -> None:
    with pytest.raises(ValueError, match="blank"):
        compose_sms(text)


def test_nothing_left_after_link_removal_raises() -> None:
    with pytest.raises(ValueError, match="nothing left"):
        compose_sms("https://evil.com/x")


def test_zero_segment_budget_raises() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        compose_sms("hello", max_segments=0)


# --- estimate_cost ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "per_segment_cents", "cents"),
    [
        (0, 0.83, 0.0),
        (1, 0.83, 0.83),
        (3, 0.83, 2.49),
        (4, 0.0079, 0.0316),
        (3, 1.23456, 3.7037),
    ],
)
def test_estimate_cost(segments: int, per_segment_cents: float, cents: float) -> None:
    assert estimate_cost(segments, per_segment_cents=per_segment_cents) == cents


def test_estimate_cost_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        estimate_cost(-1, per_segment_cents=0.83)


def test_html_entities_from_model_servers_are_unescaped() -> None:
    composed = compose_sms("I&#39;m sorry &amp; we&#x27;ll call you")
    assert composed.body == "I'm sorry & we'll call you"
    assert composed.encoding == Encoding.GSM7
