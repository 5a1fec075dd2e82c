"""Training samples of key-value facts hidden in real text: the reading skill behind MK-NIAH.

Reader v3 learnt to find *the* answer-like sentence; with several sentences of the same form in the context
("... for amber is: 8721488", "... for cedar is: 1937760") it often returned another key's value (MK-NIAH-1
at 100k: 13 / 20 on the H200). Here 2-6 facts share one template and differ in their key and value; the
question asks for one key (or, at `p_unanswerable`, for a key no fact holds: abstain).

These are deliberately not RULER's needles: other templates, keys drawn from the haystack's own words
(RULER's evaluation keys, `niah.KEY_WORDS`, are excluded) and several kinds of value, so the needle
benchmark still measures a skill, not its own sentences.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from gdn2_model.data.niah import KEY_WORDS
from gdn2_model.prompt import ContextPiece

# (fact, question): one template per sample, so only the key tells the facts apart
TEMPLATES = (
    ("The access code for the {key} account is {value}.", "What is the access code for the {key} account?"),
    ("Record {key} was given the reference number {value}.", "Which reference number did record {key} get?"),
    ("For the {key} service, the assigned port is {value}.", "Which port is assigned to the {key} service?"),
    ("The serial number registered to {key} is {value}.", "What serial number is registered to {key}?"),
    ("Ticket {key} was filed under case {value}.", "Under which case was ticket {key} filed?"),
    ("The locker combination for {key} is {value}.", "What is the combination of {key}'s locker?"),
    ("Batch {key} shipped with lot code {value}.", "What lot code did batch {key} ship with?"),
    ("Our records list {value} as the badge of {key}.", "What badge do our records list for {key}?"),
)
_WORD = re.compile(r"\b[a-z]{5,10}\b")
_EXCLUDED = frozenset(KEY_WORDS)


def _value(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == 1:
        letters = "".join(rng.choices(string.ascii_uppercase, k=2))
        return f"{letters}-{rng.randint(100, 9999)}"
    return "".join(rng.choice("0123456789abcdef") for _ in range(8))


def _keys(rng: random.Random, pieces: list[ContextPiece], n: int) -> list[str] | None:
    words = sorted({w for p in pieces for w in _WORD.findall(p.text.lower())} - _EXCLUDED)
    return rng.sample(words, n) if len(words) >= n else None


def _boundary(text: str, at: int, taken: list[tuple[int, int]]) -> int:
    """Where a fact goes near `at`: after the next sentence end within 400 characters, never inside a fact
    already placed (`taken`: their (start, end) in `text`)."""
    dot = text.find(". ", at)
    at = dot + 2 if 0 <= dot < at + 400 else at
    for s, e in taken:
        if s < at < e:
            return s
    return at


@dataclass(frozen=True)
class KeyedFacts:
    """A context with the facts in it; `answer` = (piece, char start, char end) of the asked key's value and
    `fact` the span of its whole sentence, both None when the asked key has no fact (abstain)."""

    question: str
    pieces: list[ContextPiece]
    answer: tuple[int, int, int] | None
    fact: tuple[int, int, int] | None
    value: str


def keyed_facts(
    rng: random.Random,
    haystack: Callable[[random.Random, float], list[ContextPiece]],
    target_chars: float,
    p_unanswerable: float,
) -> KeyedFacts | None:
    """One context of facts, or None when the haystack has too few distinct words for keys.
    `haystack(rng, chars)` draws real pieces of about `chars` characters."""
    pieces = haystack(rng, target_chars)
    n = rng.randint(2, 6)
    keys = _keys(rng, pieces, n + 1) if pieces else None
    if keys is None:
        return None
    fact, ask = rng.choice(TEMPLATES)
    values = [_value(rng) for _ in range(n)]
    texts = [p.text for p in pieces]
    placed: list[tuple[int, int, int]] = []  # (piece, fact start, fact length) of each key, in key order
    for key, value in zip(keys, values, strict=False):
        pi = rng.randrange(len(texts))
        sentence = fact.format(key=key, value=value) + " "
        taken = [(s, s + n) for p, s, n in placed if p == pi]
        at = _boundary(texts[pi], rng.randrange(len(texts[pi]) + 1), taken)
        texts[pi] = texts[pi][:at] + sentence + texts[pi][at:]
        placed = [(p, s + len(sentence), n) if p == pi and s >= at else (p, s, n) for p, s, n in placed]
        placed.append((pi, at, len(sentence) - 1))
    pieces = [ContextPiece(t, p.header) for t, p in zip(texts, pieces, strict=True)]
    if rng.random() < p_unanswerable:  # a key no fact holds (the spare one)
        return KeyedFacts(ask.format(key=keys[n]), pieces, None, None, "")
    target = rng.randrange(n)
    pi, start, length = placed[target]
    value = values[target]
    vstart = start + len(fact[: fact.index("{value}")].format(key=keys[target]))
    answer = (pi, vstart, vstart + len(value))
    return KeyedFacts(ask.format(key=keys[target]), pieces, answer, (pi, start, start + length), value)
