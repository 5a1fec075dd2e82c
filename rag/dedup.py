"""Near-duplicate dropping: a chunk that repeats a better-ranked one wastes reader budget.

Exact copies are caught by `content_hash`; near copies (the same license text with a different
header, a re-indented function) by Jaccard similarity of word 5-shingles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
SHINGLE = 5


def shingles(text: str, n: int = SHINGLE) -> frozenset[int]:
    """Hashes of the word n-grams of `text` (lower-cased); a short text is one shingle of all its words."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset({hash(tuple(words))}) if words else frozenset()
    return frozenset(hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def drop_near_duplicates(chunks: Sequence, threshold: float = 0.9) -> tuple[list, list]:
    """Split ranked `chunks` (best first; each has `.text` and `.content_hash`) into (kept, dropped).

    A chunk is dropped when it has the content hash of a kept one, or a shingle Jaccard >= threshold
    with one. Overlaps are counted through an inverted index of the kept chunks' shingles, so the
    cost follows shared shingles, not kept x candidates (hundreds of chunks fill a 100k budget).
    """
    kept: list = []
    dropped: list = []
    hashes: set[str] = set()
    sizes: list[int] = []
    postings: dict[int, list[int]] = {}
    for chunk in chunks:
        digest = getattr(chunk, "content_hash", None)
        if digest and digest in hashes:
            dropped.append(chunk)
            continue
        sh = shingles(chunk.text)
        if threshold < 1.0 and _is_near_copy(sh, sizes, postings, threshold):
            dropped.append(chunk)
            continue
        slot = len(kept)
        kept.append(chunk)
        sizes.append(len(sh))
        for s in sh:
            postings.setdefault(s, []).append(slot)
        if digest:
            hashes.add(digest)
    return kept, dropped


def _is_near_copy(
    sh: frozenset[int], sizes: list[int], postings: dict[int, list[int]], threshold: float
) -> bool:
    overlap: dict[int, int] = {}
    for s in sh:
        for slot in postings.get(s, ()):
            overlap[slot] = overlap.get(slot, 0) + 1
    if not sh:
        # an empty text is a copy of any other empty text
        return any(size == 0 for size in sizes)
    return any(inter / (len(sh) + sizes[slot] - inter) >= threshold for slot, inter in overlap.items())
