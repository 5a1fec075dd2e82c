"""When `ask --abstain` declines to answer, and why.

Two signals, either one abstains:
1. **The question names something no indexed document mentions**: a term of the question that no live
   chunk holds (the keyword index's own tokenization) and that is not an English word in any simple form
   (the query embedder's tokenizer vocabulary is the word list: `Index.dictionary_words`). "restic",
   "boto3", "read_csv", "uvicorn", "PoolManager" are such names; "nutshell", "governs" or "relicensed" are
   paraphrase words the documents happen not to use, and do not count. Names with a version suffix count as
   known when their stem is indexed ("gplv2" when "gpl" is). Also a multi-word capitalised name that no
   chunk holds as a phrase ("Business Source License", whose words each occur).
2. **No retrieved passage is close to the question**: the best dense cosine of the ABSTAIN_TOP_PASSAGES best
   passages is under the threshold calibrated for the index's embedder.

On the hand-written dev set (bench/data/natural_dev.jsonl: 205 answerable, 30 unanswerable), the cosine alone
caught 60 % of the unanswerable questions at 10 % of the answerable abstaining; with the names, 70 % at
9.8 % (bench/results/reader.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Protocol

from gdn2_rag.extractive import STOPWORDS
from gdn2_rag.types import Passage

ABSTAIN_TOP_PASSAGES = 10
# best dense cosine of the retrieved passages under which `ask` abstains, per embedder, calibrated together
# with the names signal on the dev set (bench/rag/natural/eval_modes.py --calibrate): at 0.5115 the bundled
# MiniLM abstained on 9.8 % of the answerable and 70 % of the unanswerable questions
CALIBRATED_ABSTAIN_BELOW = {"sentence-transformers/all-MiniLM-L6-v2": 0.5115}
# shorter terms are too often abbreviations ("lr", "ok") to be taken for a name
MIN_NAME_CHARS = 3
_SUFFIXES = (
    ("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", ""),
    ("d", ""), ("est", ""), ("er", ""),
    # derivations ("lazily", "handiest", "changeable", "memoization", "finalisation", "stringified",
    # "falsy", "factorizer", "openness", "pointless")
    ("ily", "y"), ("iest", "y"), ("ier", "y"), ("able", ""), ("able", "e"), ("ization", ""),
    ("ization", "ize"), ("isation", ""), ("isation", "ise"), ("ified", ""), ("ified", "y"), ("y", "e"),
    ("izer", ""), ("izer", "ize"), ("ness", ""), ("ment", ""), ("ful", ""), ("less", ""),
)  # fmt: skip
_PREFIXES = ("re", "un", "de", "pre", "non", "mis", "over", "under", "sub", "co")
# words that do not start or continue a multi-word name ("Under the GPL", "Apache License for ...")
NAME_BREAKS = STOPWORDS | frozenset(
    [
        "could",
        "did",
        "had",
        "if",
        "into",
        "might",
        "must",
        "my",
        "our",
        "so",
        "than",
        "their",
        "then",
        "there",
        "these",
        "those",
        "under",
        "we",
        "whom",
        "whose",
        "would",
    ]
)
_CODE_CHARS = re.compile(r"[0-9_]")
_VERSION = re.compile(r"v?\d+$")
_DECADE = re.compile(r"\d*0s")  # "80s", "1990s": a time, not a name


class TermIndex(Protocol):
    """What the names signal reads from an index (gdn2_ingest.Index has all three)."""

    def doc_freqs(self, text: str) -> dict[str, int]: ...

    def dictionary_words(self) -> Collection[str] | None: ...

    def mentions(self, phrase: str) -> bool: ...


def word_forms(term: str) -> set[str]:
    """`term` and its stems by the common English suffixes ("governs" -> "govern", "bundling" -> "bundle",
    "stopped" -> "stop", "quickest" -> "quick") and prefixes ("relicensed" -> "licensed"): enough to find an
    inflected word in a word list, not a stemmer."""
    forms = {term}
    for prefix in _PREFIXES:
        if term.startswith(prefix) and len(term) - len(prefix) >= 4:
            forms.add(term[len(prefix) :])
    for word in list(forms):
        for suffix, repl in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                stem = word[: -len(suffix)] + repl
                forms.add(stem)
                if len(stem) > 3 and stem[-1] == stem[-2]:
                    forms.add(stem[:-1])
    return forms


def is_english(term: str, dictionary: Collection[str], compounds: bool = True) -> bool:
    """Whether `term` is a dictionary word in some simple form: inflected ("dedicating", via "dedicated"),
    prefixed, or (with `compounds`) two dictionary words of 3+ letters run together ("nutshell")."""
    for form in word_forms(term):
        if form in dictionary or any(form + end in dictionary for end in ("d", "ed", "s", "es")):
            return True
    if compounds:
        return any(term[:i] in dictionary and term[i:] in dictionary for i in range(3, len(term) - 2))
    return False


def _spellings(question: str) -> dict[str, set[str]]:
    """Lowercased word -> how the question spells it ("poolmanager" -> {"PoolManager"})."""
    out: dict[str, set[str]] = {}
    for word in re.findall(r"\w+", question):
        out.setdefault(word.lower(), set()).add(word)
    return out


def _capitalised_phrases(question: str) -> list[str]:
    """Runs of 2+ capitalised words after the first word, outside stopwords ("the Business Source License"
    -> "Business Source License"): multi-word names. Hyphens split words ("Perl-style" is no name)."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9_.+]*", question)
    phrases, run = [], []
    for i, word in enumerate(words + [""]):
        if i > 0 and word[:1].isupper() and word.lower() not in NAME_BREAKS:
            run.append(word)
            continue
        if len(run) >= 2:
            phrases.append(" ".join(run))
        run = []
    return phrases


def unknown_names(question: str, index: TermIndex) -> list[str]:
    """The names in `question` that no indexed chunk mentions (module docstring); [] when the index has no
    word list to tell names from words."""
    dictionary = index.dictionary_words()
    if not dictionary:
        return []
    spelled = _spellings(question)
    absent = [
        t for t, n in index.doc_freqs(question).items()
        if n == 0 and len(t) >= MIN_NAME_CHARS and any(c.isalpha() for c in t)
    ]  # fmt: skip
    candidates: dict[str, set[str]] = {}
    for term in absent:
        if _DECADE.fullmatch(term):
            continue
        if _CODE_CHARS.search(term):  # an identifier or a versioned name: known if its stem is indexed
            stem = _VERSION.sub("", term)
            candidates[term] = {stem} if stem != term and len(stem) >= 2 else set()
            continue
        # written CamelCase or in capitals ("PoolManager", "ISC"), a run of words is one name, not a compound
        camel = any(any(c.isupper() for c in w[1:]) for w in spelled.get(term, ()))
        if not is_english(term, dictionary, compounds=not camel):
            candidates[term] = word_forms(term) - {term}
    lookups = {f for forms in candidates.values() for f in forms}
    indexed = index.doc_freqs(" ".join(sorted(lookups))) if lookups else {}
    names = [t for t, forms in candidates.items() if not any(indexed.get(f, 0) > 0 for f in forms)]
    return names + [p for p in _capitalised_phrases(question) if not index.mentions(p)]


def best_cosine(passages: Sequence[Passage]) -> float | None:
    """The best dense cosine of the ABSTAIN_TOP_PASSAGES best passages (None: no dense scores)."""
    dense = [p.dense_score for p in passages[:ABSTAIN_TOP_PASSAGES] if p.dense_score is not None]
    return max(dense) if dense else None


def abstention(question: str, passages: Sequence[Passage], threshold: float, index: TermIndex) -> str:
    """Why `ask` abstains on `question` ("" when it answers)."""
    names = unknown_names(question, index)
    if names:
        quoted = ", ".join(f"'{n}'" for n in names)
        return f"the indexed documents never mention {quoted}"
    best = best_cosine(passages)
    if best is None or best >= threshold:
        return ""
    return (
        f"no retrieved passage is close to the question (best similarity {best:.2f}, under the "
        f"abstention threshold {threshold:.2f})"
    )
