"""Retrieval-only answer span: the sentence of the best passages sharing most (rare) words with the question.

Used when no reader checkpoint is available. It is labelled as such everywhere it is shown: it picks
text, it does not read or understand it.
"""

from __future__ import annotations

import math
import re

_WORD = re.compile(r"\w+")
# prose: a sentence ends at ., ! or ? before whitespace (hard-wrapped lines continue it);
# paragraphs end at blank lines
_SENTENCE = re.compile(r"(?:[^.!?]|[.!?](?!\s))*(?:[.!?]+(?=\s)|$)", re.S)
_ENUMERATOR = re.compile(r"\(?[0-9A-Za-z]{1,3}(?:\.[0-9]{1,3})*[.)]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_STOPWORDS_TEXT = """
a an and are as at be by can do does for from has have how i in is it its may of on or shall should
that the this to was what when where which who why will with you your
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A crude suffix stripper, enough for expire/expires/expired/expiring to meet."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _terms(text: str) -> list[str]:
    return [stem(w) for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS]


def sentence_spans(text: str, by_lines: bool = False) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text` (of its lines with `by_lines`, for code), stripped."""
    spans = []
    if by_lines:
        pos = 0
        for line in text.split("\n"):
            spans.append((pos, pos + len(line)))
            pos += len(line) + 1
    else:
        start = 0
        for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
            end = brk.start() if brk else len(text)
            spans += [(start + m.start(), start + m.end()) for m in _SENTENCE.finditer(text[start:end])]
            start = brk.end() if brk else end
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e <= s:
            continue
        # an enumerator ("3.", "(b)") belongs to the sentence after it
        if out and _ENUMERATOR.fullmatch(text[out[-1][0] : out[-1][1]]):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def sentence_scores(question: str, text: str, by_lines: bool = False) -> list[tuple[int, int, float]]:
    """(start, end, score) of every sentence of `text` (lines with `by_lines`), scored against `question`.

    Score: sum over question terms found in the sentence of log(1 + N / df), where df counts the
    sentences of `text` holding the term, so rare words weigh more.
    """
    spans = sentence_spans(text, by_lines) or [(0, len(text))]
    q = set(_terms(question))
    bags = [set(_terms(text[s:e])) for s, e in spans]
    n = len(spans)
    df = {t: sum(1 for bag in bags if t in bag) for t in q}
    return [
        (s, e, sum(math.log1p(n / df[t]) for t in q if t in bag))
        for (s, e), bag in zip(spans, bags, strict=True)
    ]


def best_span(
    question: str, text: str, max_chars: int = 600, by_lines: bool = False
) -> tuple[int, int, float]:
    """(start, end, score) of the sentence in `text` that best matches `question` (`sentence_scores`).

    A sentence longer than `max_chars` is cut at a word boundary. Falls back to the start of the text
    when nothing matches.
    """
    scored = sentence_scores(question, text, by_lines)
    s, e, best_score = scored[0][0], scored[0][1], 0.0
    for cs, ce, score in scored:
        if score > best_score:
            s, e, best_score = cs, ce, score
    if e - s > max_chars:
        cut = text.rfind(" ", s, s + max_chars)
        e = cut if cut > s else s + max_chars
    return s, e, best_score
