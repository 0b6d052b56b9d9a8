"""Turn model output into an SMS body that is billed and rendered the way carriers count it.

Language models write Markdown, curly quotes and links; a phone shows none of that nicely and a
single curly quote silently switches the whole message from GSM-7 (160 characters per segment)
to UCS-2 (70 per segment), more than doubling the bill. This module strips the markup, maps
look-alike characters back to GSM-7, drops links to hosts the business has not approved, and
keeps the body within a segment budget, counting segments exactly as carriers pack them.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "ComposedSms",
    "Encoding",
    "SegmentInfo",
    "compose_sms",
    "count_segments",
    "estimate_cost",
    "normalize_gsm",
    "strip_markdown",
]


class Encoding(StrEnum):
    """Character encoding a carrier uses for the message."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True)
class SegmentInfo:
    """How a body is split into billable segments."""

    encoding: Encoding
    segments: int
    units: int
    per_segment: int


@dataclass(frozen=True)
class ComposedSms:
    """A body ready to hand to the SMS provider, with what was done to get there."""

    body: str
    encoding: Encoding
    segments: int
    truncated: bool
    removed_links: tuple[str, ...]


# --- Segment counting -----------------------------------------------------------------------

# 3GPP TS 23.038 default alphabet; position 0x1B is the escape to the extension table and is not
# a character a message can contain on its own.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these is sent as ESC + char, so it costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE = 160
_GSM7_CONCAT = 153  # 7 septets go to the concatenation header
_UCS2_SINGLE = 70
_UCS2_CONCAT = 67


def _gsm7_costs(text: str) -> list[int] | None:
    """Septets per character, or None when some character is outside GSM-7."""
    costs: list[int] = []
    for char in text:
        if char in GSM7_BASIC:
            costs.append(1)
        elif char in GSM7_EXTENSION:
            costs.append(2)
        else:
            return None
    return costs


def _ucs2_costs(text: str) -> list[int]:
    """UTF-16 code units per character: anything beyond the BMP is a surrogate pair."""
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def _pack(costs: list[int], capacity: int) -> int:
    """Segments needed when no character may be split across two segments."""
    segments, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            segments += 1
            used = 0
        used += cost
    return segments


def count_segments(text: str) -> SegmentInfo:
    """Count the segments a carrier bills for ``text``."""
    gsm_costs = _gsm7_costs(text)
    if gsm_costs is not None:
        encoding, costs, single, concat = Encoding.GSM7, gsm_costs, _GSM7_SINGLE, _GSM7_CONCAT
    else:
        encoding, costs, single, concat = (
            Encoding.UCS2,
            _ucs2_costs(text),
            _UCS2_SINGLE,
            _UCS2_CONCAT,
        )
    units = sum(costs)
    if units == 0:
        return SegmentInfo(encoding, 0, 0, single)
    if units <= single:
        return SegmentInfo(encoding, 1, units, single)
    return SegmentInfo(encoding, _pack(costs, concat), units, concat)


def estimate_cost(segments: int, *, per_segment_cents: float) -> float:
    """Price of ``segments`` segments in cents."""
    if segments < 0 or per_segment_cents < 0:
        raise ValueError("segments and per_segment_cents must not be negative")
    return round(segments * per_segment_cents, 4)


# --- GSM-7 normalisation ----------------------------------------------------------------------

_LOOKALIKES: dict[str, str] = {
    **dict.fromkeys("‘’‚‛′‵´`ʼʹ‹›", "'"),
    **dict.fromkeys("“”„‟″‶«»", '"'),
    **dict.fromkeys("‐‑‒–—―−﹘﹣", "-"),
    **dict.fromkeys("…⋯", "..."),
    **dict.fromkeys("\t\u00a0\u1680\u202f\u205f\u3000", " "),
    **dict.fromkeys("".join(chr(c) for c in range(0x2000, 0x200B)), " "),
    **dict.fromkeys("\u2028\u2029\u0085\v", "\n"),
    **dict.fromkeys("•‣⁃◦∙▪●·", "-"),
    # Invisible characters that only force UCS-2. ZWJ is handled separately: it glues emoji.
    **dict.fromkeys("\u200b\u200c\u2060\ufeff\u00ad\u180e", ""),
    "⁄": "/",
    "∕": "/",
    "×": "x",
    "÷": "/",
    "≤": "<=",
    "≥": ">=",
    "≠": "!=",
    "½": "1/2",
    "¼": "1/4",
    "¾": "3/4",
    "™": "TM",
    "©": "(c)",
    "®": "(R)",
    "¦": "|",
    "ˆ": "^",
    "˜": "~",
    "‗": "_",
}


def _build_gsm_table() -> dict[int, str]:
    table = {ord(src): dst for src, dst in _LOOKALIKES.items()}
    # Full-width ASCII (common from CJK keyboards) has exact GSM-7 counterparts.
    for code in range(0xFF01, 0xFF5F):
        ascii_char = chr(code - 0xFEE0)
        table.setdefault(code, _LOOKALIKES.get(ascii_char, ascii_char))
    return table


_GSM_TABLE = _build_gsm_table()
_ZWJ_RE = re.compile("\u200d")


def _drop_stray_zwj(text: str) -> str:
    """Remove zero-width joiners except between two non-GSM characters (emoji sequences)."""

    def replace(match: re.Match[str]) -> str:
        before = text[match.start() - 1] if match.start() > 0 else ""
        after = text[match.end()] if match.end() < len(text) else ""
        joins_symbols = bool(before and after) and not (_is_gsm_char(before) or _is_gsm_char(after))
        return match.group(0) if joins_symbols else ""

    return _ZWJ_RE.sub(replace, text)


def _is_gsm_char(char: str) -> bool:
    return char in GSM7_BASIC or char in GSM7_EXTENSION


def normalize_gsm(text: str) -> str:
    """Map look-alike punctuation and spaces to GSM-7; keep characters that have no equivalent.

    Letters outside GSM-7 (a customer's 'ő', CJK, emoji) are never dropped or transliterated:
    a correctly spelled name is worth the UCS-2 price.
    """
    # Canonical composition turns a decomposed 'é' (e + combining accent) into the GSM-7 'é'.
    composed = unicodedata.normalize("NFC", text)
    return _drop_stray_zwj(composed.translate(_GSM_TABLE))


# --- URLs -------------------------------------------------------------------------------------

# Bare domains are only recognised with a common TLD (or with a path) so that prose like
# "Dr.Smith" or "e.g." is not mistaken for a link.
_COMMON_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|us|ca|uk|au|nz|ie|de|fr|es|it|nl|eu|in|me|ly|gl"
    "|gd|to|cc|tv|ru|cn|su|tk|ml|ga|cf|gq|top|xyz|app|dev|page|site|online|link|click|live|shop"
    "|store|club|icu|vip|win|health|care|clinic|dental|dentist|services|plumbing"
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL_RE = re.compile(
    r"\bhttps?://[^\s<>\"]+"
    r"|(?<![\w@./-])www\.[^\s<>\"]+"
    rf"|(?<![\w@./-])(?:{_LABEL}\.)+(?:(?:{_COMMON_TLDS})(?![\w-])(?::\d{{2,5}})?(?:/[^\s<>\"]*)?"
    r"|[a-z]{2,24}(?::\d{2,5})?/[^\s<>\"]*)",
    re.IGNORECASE,
)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_TRAILING = ".,;:!?'\"*_~"
_SCHEME_RE = re.compile(r"^https?://", re.IGNORECASE)


def _trim_url(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets that follow a URL."""
    while url:
        last = url[-1]
        if (
            last in _URL_TRAILING
            or (last == ")" and url.count(")") > url.count("("))
            or (last == "]" and url.count("]") > url.count("["))
        ):
            url = url[:-1]
        else:
            break
    return url


def _find_urls(text: str) -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, url) for every link in ``text``, skipping email addresses."""
    email_spans = [m.span() for m in _EMAIL_RE.finditer(text)]
    for match in _URL_RE.finditer(text):
        url = _trim_url(match.group(0))
        start = match.start()
        if not url or any(s <= start < e for s, e in email_spans):
            continue
        yield start, start + len(url), url


def _host_of(url: str) -> str | None:
    candidate = url if _SCHEME_RE.match(url) else f"http://{url}"
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def _normalize_hosts(hosts: Collection[str]) -> frozenset[str]:
    normalized: set[str] = set()
    for raw in hosts:
        host = raw.strip().lower()
        if "://" in host:
            host = urlsplit(host).hostname or ""
        host = host.removeprefix("*.").strip(".")
        if host:
            normalized.add(host)
    return frozenset(normalized)


def _host_allowed(url: str, allowed: frozenset[str]) -> bool:
    host = _host_of(url)
    if host is None:
        return False
    return any(host == ok or host.endswith(f".{ok}") for ok in allowed)


# --- Markdown ---------------------------------------------------------------------------------

_SLOT_OPEN, _SLOT_CLOSE = "\ue000", "\ue001"
_SLOT_RE = re.compile(f"{_SLOT_OPEN}(\\d+){_SLOT_CLOSE}")


class _Vault:
    """Holds text that later Markdown rules must not touch (code, URLs, escapes)."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def keep(self, text: str) -> str:
        self._items.append(text)
        return f"{_SLOT_OPEN}{len(self._items) - 1}{_SLOT_CLOSE}"

    def restore(self, text: str) -> str:
        # Kept text may itself contain slots (a code span inside a link label).
        while _SLOT_RE.search(text):
            text = _SLOT_RE.sub(lambda m: self._items[int(m.group(1))], text)
        return text


_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_OPEN_FENCE_RE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[^\n]*$", re.M)
_CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.S)
_ESCAPE_RE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])")
_LINK_RE = re.compile(
    r"!?\[([^\]\n]*)\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]*\))+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
_AUTOLINK_RE = re.compile(r"<((?:https?://|mailto:)[^\s<>]+|[^\s<>@]+@[^\s<>]+)>", re.I)
# Only consulted for lines that contain a pipe, so a bare "---" rule is not mistaken for one.
_TABLE_DELIM_RE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_HEADING_RE = re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$", re.M)
_SETEXT_RE = re.compile(r"^[ \t]*=+[ \t]*$", re.M)
_QUOTE_RE = re.compile(r"^[ \t]{0,3}(?:>[ \t]?)+", re.M)
_RULE_RE = re.compile(r"^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_BULLET_RE = re.compile(r"^[ \t]*[-*+•][ \t]+(?:\[[ xX]\][ \t]+)?", re.M)
_NUMBERED_RE = re.compile(r"^[ \t]*(\d{1,3}[.)])[ \t]+", re.M)
_EMPHASIS_RES = (
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"),
    # Word characters on either side mean snake_case, not emphasis.
    re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])"),
)
_BREAK_RE = re.compile(r"<br\s*/?>", re.I)
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def _same_phone_number(label: str, target: str) -> bool:
    """Whether a link label already shows the number it dials (country code optional)."""
    shown, dialled = re.sub(r"\D", "", label), re.sub(r"\D", "", target)
    return len(shown) >= 7 and dialled.endswith(shown)


def _render_link(label: str, target: str, vault: _Vault) -> str:
    label = label.strip()
    lowered = target.lower()
    if lowered.startswith("mailto:"):
        target = target[len("mailto:") :]
    elif lowered.startswith("tel:"):
        target = target[len("tel:") :]
        if _same_phone_number(label, target):
            return label
    bare = _SCHEME_RE.sub("", target).rstrip("/")
    if not label or label in (target, bare, f"{bare}/"):
        return vault.keep(target)
    return f"{label} ({vault.keep(target)})"


def _protect_urls(text: str, vault: _Vault) -> str:
    spans = sorted(
        [(s, e) for s, e, _ in _find_urls(text)] + [m.span() for m in _EMAIL_RE.finditer(text)]
    )
    pieces: list[str] = []
    pos = 0
    for start, end in spans:
        if start < pos:
            continue
        pieces.append(text[pos:start])
        pieces.append(vault.keep(text[start:end]))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def _table_cells(line: str) -> list[str]:
    stripped = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in stripped.split("|") if cell.strip()]


def _flatten_table_block(block: list[str]) -> list[str]:
    is_table = any(_TABLE_DELIM_RE.match(line) for line in block) or all(
        line.strip().startswith("|") and line.strip().endswith("|") for line in block
    )
    if not is_table:
        return block
    return [", ".join(_table_cells(line)) for line in block if not _TABLE_DELIM_RE.match(line)]


def _flatten_tables(text: str) -> str:
    out: list[str] = []
    block: list[str] = []
    for line in [*text.split("\n"), ""]:
        if "|" in line:
            block.append(line)
            continue
        if block:
            out.extend(_flatten_table_block(block))
            block = []
        out.append(line)
    return "\n".join(out[:-1])


def _strip_blocks(text: str) -> str:
    text = _flatten_tables(text)
    text = _HEADING_RE.sub(lambda m: m.group(1) or "", text)
    text = _SETEXT_RE.sub("", text)
    text = _QUOTE_RE.sub("", text)
    text = _RULE_RE.sub("", text)
    text = _BULLET_RE.sub("- ", text)
    return _NUMBERED_RE.sub(r"\1 ", text)


def _strip_emphasis(text: str) -> str:
    for pattern in _EMPHASIS_RES:
        text = pattern.sub(r"\1", text)
    return text


def _tidy_lines(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


def strip_markdown(text: str) -> str:
    """Render Markdown as plain text a phone displays sensibly."""
    vault = _Vault()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace(_SLOT_OPEN, "").replace(_SLOT_CLOSE, "")
    text = _FENCE_RE.sub(lambda m: vault.keep(m.group(2).strip("\n")), text)
    text = _OPEN_FENCE_RE.sub("", text)
    text = _CODE_SPAN_RE.sub(lambda m: vault.keep(m.group(2).strip()), text)
    text = _ESCAPE_RE.sub(lambda m: vault.keep(m.group(1)), text)
    text = _LINK_RE.sub(lambda m: _render_link(m.group(1), m.group(2), vault), text)
    text = _AUTOLINK_RE.sub(
        lambda m: vault.keep(re.sub("^mailto:", "", m.group(1), flags=re.I)), text
    )
    text = _protect_urls(text, vault)
    text = _strip_emphasis(_strip_blocks(text))
    text = _BREAK_RE.sub("\n", text)
    return _tidy_lines(vault.restore(text))


# --- Composition ------------------------------------------------------------------------------

_GAP = "\ue002"
# Removing a link should not leave "Book here: ." or "see ( )" behind.
_GAP_BEFORE_PUNCT_RE = re.compile(rf"[ \t]*:?[ \t]*{_GAP}(?=[ \t]*(?:[.,!?;)]|\n|$))")
_ELLIPSIS = "..."
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*(?=\s|$)|\n")
_CLAUSE_TRAILING = " \t\n,;:-.(["


def _widen_to_parens(text: str, start: int, end: int) -> tuple[int, int]:
    """Extend a link span to include parentheses that only wrap the link."""
    left = start
    while left > 0 and text[left - 1] in " \t":
        left -= 1
    right = end
    while right < len(text) and text[right] in " \t":
        right += 1
    if left > 0 and text[left - 1] == "(" and right < len(text) and text[right] == ")":
        return left - 1, right + 1
    return start, end


def _remove_links(text: str, allowed: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    pieces: list[str] = []
    removed: list[str] = []
    pos = 0
    for start, end, url in _find_urls(text):
        if _host_allowed(url, allowed):
            continue
        start, end = _widen_to_parens(text, start, end)
        if start < pos:
            continue
        pieces.extend((text[pos:start], _GAP))
        pos = end
        if url not in removed:
            removed.append(url)
    pieces.append(text[pos:])
    cleaned = _GAP_BEFORE_PUNCT_RE.sub("", "".join(pieces))
    return cleaned.replace(_GAP, ""), tuple(removed)


def _fits(text: str, max_segments: int) -> bool:
    return count_segments(text).segments <= max_segments


def _longest_fitting_prefix(text: str, max_segments: int) -> int:
    """Largest n such that text[:n] followed by an ellipsis fits the budget."""
    # Segment count only grows as characters are appended, so binary search is sound.
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(text[:mid] + _ELLIPSIS, max_segments):
            low = mid
        else:
            high = mid - 1
    return low


def _cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` so that at most ``limit`` characters remain."""
    sentence_ends = [m.end() for m in _SENTENCE_END_RE.finditer(text) if m.end() <= limit]
    # A sentence boundary that throws away most of the budget reads worse than a word cut.
    if sentence_ends and sentence_ends[-1] >= limit // 2:
        return sentence_ends[-1]
    if limit < len(text) and text[limit].isspace():
        return limit
    word_break = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return word_break if word_break > 0 else limit


def _truncate(text: str, max_segments: int) -> str:
    limit = _longest_fitting_prefix(text, max_segments)
    kept = text[: _cut_point(text, limit)].rstrip(_CLAUSE_TRAILING)
    candidate = kept + _ELLIPSIS
    return candidate if kept and _fits(candidate, max_segments) else text[:limit] + _ELLIPSIS


def compose_sms(
    text: str,
    *,
    max_segments: int = 4,
    allowed_link_hosts: Collection[str] = (),
    signature: str | None = None,
) -> ComposedSms:
    """Turn model output into an SMS body within ``max_segments`` segments.

    Raises ValueError for blank input, or when nothing is left once disallowed links are gone.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    # Some model servers (llama.cpp among them) send HTML entities such as &#39; for quotes.
    text = html.unescape(text)
    if not text.strip():
        raise ValueError("cannot compose an SMS from blank text")
    body = normalize_gsm(strip_markdown(text))
    body, removed = _remove_links(body, _normalize_hosts(allowed_link_hosts))
    body = _tidy_lines(body)
    if not body:
        raise ValueError("nothing left to send once disallowed links were removed")
    truncated = not _fits(body, max_segments)
    if truncated:
        body = _truncate(body, max_segments)
    if signature is not None and signature.strip():
        signed = f"{body}\n{_tidy_lines(normalize_gsm(signature))}"
        if _fits(signed, max_segments):
            body = signed
    info = count_segments(body)
    return ComposedSms(body, info.encoding, info.segments, truncated, removed)
