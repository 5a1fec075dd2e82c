"""When `ask --abstain` declines to answer, and why.

Two signals, either one abstains:
1. **The question names something no indexed document mentions**: a term of the question that no live
   chunk holds (the keyword index's own tokenization) and that is not an English word in any simple form
   (the query embedder's tokenizer vocabulary is the word list: `Index.dictionary_words`). "restic",
   "boto3", "read_csv", "uvicorn" are such names; "nutshell" or "governs" are paraphrase words the
   documents happen not to use, and do not count. Names with a version suffix count as known when their
   stem is indexed ("gplv2" when "gpl" is).
2. **No retrieved passage is close to the question**: the best dense cosine of the ABSTAIN_TOP_PASSAGES best
   passages is under the threshold calibrated for the index's embedder.

On the hand-written dev set (bench/data/natural_dev.jsonl: 205 answerable, 30 unanswerable), the cosine alone
caught 60 % of the unanswerable questions at 10 % of the answerable abstaining; with the names, 67 % at
9.8 % (bench/results/reader.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Protocol

from gdn2_rag.types import Passage

ABSTAIN_TOP_PASSAGES = 10
# best dense cosine of the retrieved passages under which `ask` abstains, per embedder, calibrated together
# with the names signal on the dev set (bench/rag/natural/eval_modes.py --calibrate): at 0.503 the bundled
# MiniLM abstained on 9.8 % of the answerable and 67 % of the unanswerable questions
CALIBRATED_ABSTAIN_BELOW = {"sentence-transformers/all-MiniLM-L6-v2": 0.503}
# shorter terms are too often abbreviations ("lr", "ok") to be taken for a name
MIN_NAME_CHARS = 3
_SUFFIXES = (
    ("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", ""),
    ("d", ""), ("est", ""), ("er", ""),
)  # fmt: skip
_CODE_CHARS = re.compile(r"[0-9_]")
_VERSION = re.compile(r"v?\d+$")


class TermIndex(Protocol):
    """What the names signal reads from an index (gdn2_ingest.Index has both)."""

    def doc_freqs(self, text: str) -> dict[str, int]: ...

    def dictionary_words(self) -> Collection[str] | None: ...


def word_forms(term: str) -> set[str]:
    """`term` and its stems by the common English suffixes ("governs" -> "govern", "bundling" -> "bundle",
    "stopped" -> "stop", "quickest" -> "quick"): enough to find an inflected word in a word list, not a
    stemmer."""
    forms = {term}
    for suffix, repl in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            stem = term[: -len(suffix)] + repl
            forms.add(stem)
            if len(stem) > 3 and stem[-1] == stem[-2]:
                forms.add(stem[:-1])
    return forms


def unknown_names(question: str, index: TermIndex) -> list[str]:
    """The terms of `question` that name something no indexed chunk mentions (module docstring); [] when
    the index has no word list to tell names from words."""
    dictionary = index.dictionary_words()
    if not dictionary:
        return []
    absent = [
        t for t, n in index.doc_freqs(question).items()
        if n == 0 and len(t) >= MIN_NAME_CHARS and any(c.isalpha() for c in t)
    ]  # fmt: skip
    candidates: dict[str, set[str]] = {}
    for term in absent:
        if _CODE_CHARS.search(term):  # an identifier or a versioned name: known if its stem is indexed
            stem = _VERSION.sub("", term)
            candidates[term] = {stem} if stem != term and len(stem) >= 2 else set()
        else:
            forms = word_forms(term)
            if not forms & dictionary:
                candidates[term] = forms - {term}
    lookups = {f for forms in candidates.values() for f in forms}
    indexed = index.doc_freqs(" ".join(sorted(lookups))) if lookups else {}
    return [t for t, forms in candidates.items() if not any(indexed.get(f, 0) > 0 for f in forms)]


def best_cosine(passages: Sequence[Passage]) -> float | None:
    """The best dense cosine of the ABSTAIN_TOP_PASSAGES best passages (None: no dense scores)."""
    dense = [p.dense_score for p in passages[:ABSTAIN_TOP_PASSAGES] if p.dense_score is not None]
    return max(dense) if dense else None


def abstention(question: str, passages: Sequence[Passage], threshold: float, index: TermIndex) -> str:
    """Why `ask` abstains on `question` ("" when it answers)."""
    names = unknown_names(question, index)
    if names:
        quoted = ", ".join(f"'{n}'" for n in names)
        return f"the indexed documents never mention {quoted}: they do not seem to answer this"
    best = best_cosine(passages)
    if best is None or best >= threshold:
        return ""
    return (
        f"no retrieved passage is close to the question (best similarity {best:.2f}, under the "
        f"abstention threshold {threshold:.2f}): the indexed documents do not seem to answer this"
    )
