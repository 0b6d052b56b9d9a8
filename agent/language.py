"""Which language a customer writes in, for the replies sent without the model.

The model answers in the customer's language by itself; the fixed replies (a hand-off, an
emergency, a confirmation) need telling. A few common words decide between English and
Spanish, the languages the fixed replies come in; anything unclear is English.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-záéíóúüñ]+")
_SPANISH = frozenset(
    {"hola", "gracias", "cita", "citas", "por", "favor", "sí", "si", "quiero"}
    | {"puedo", "necesito", "está", "estoy", "tengo", "mañana", "hoy", "cuándo"}
    | {"cuando", "dónde", "donde", "qué", "que", "usted", "mi", "mis", "el", "la"}
    | {"los", "las", "del", "con", "para", "pero", "también", "muy", "bien", "buenas"}
    | {"buenos", "días", "tardes", "noches", "ayuda", "duele", "hinchada", "hinchado"}
    | {"cara", "agua", "casa", "confirmo", "confirmar", "cancelar", "cambiar", "es"}
    | {"en", "un", "una"}
)
_ENGLISH = frozenset(
    {"hi", "hello", "thanks", "thank", "please", "appointment", "yes", "i", "my"}
    | {"the", "is", "are", "can", "need", "want", "to", "and", "in", "on", "for", "you"}
    | {"it", "this", "that", "what", "when", "where", "today", "tomorrow", "help"}
    | {"with"}
)
# Words both languages use the same way do not count for either.
_SHARED = frozenset({"no", "a"})


def language_of(texts: Iterable[str]) -> str:
    """'es' when the texts read as Spanish, else 'en'."""
    texts = list(texts)
    words = [w for text in texts for w in _WORD.findall(text.casefold()) if w not in _SHARED]
    spanish = sum(w in _SPANISH for w in words)
    english = sum(w in _ENGLISH for w in words)
    marked = any(mark in "".join(texts) for mark in "¿¡ñ")
    return "es" if spanish > english or (marked and spanish >= english) else "en"
