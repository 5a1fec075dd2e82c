"""BM25 over the training corpus's chunks, so a training context can be laid out as retrieval lays it out.

At answer time the reader reads what retrieval returned: the question's best-matching chunks, best first,
near-misses from the same topic all around the answer. A context of random same-domain chunks (the first
v3 recipe) teaches the reader to spot the one on-topic chunk, which retrieval has already done for it;
contexts of retrieved chunks teach it to tell the answering line from its on-topic neighbours.

Training data may not import the index (gdn2_ingest): this is a small in-memory scorer with its own
tokeniser (lower-case words and numbers, a short stop list), Lucene's BM25 form (k1 1.5, b 0.75) as the
index's keyword side uses; it needs no agreement with the index beyond "ranks like a keyword retriever".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

K1 = 1.5
B = 0.75
_WORD = re.compile(r"[a-z0-9_]+")
_STOP_TEXT = (
    "a an and are as at be by for from has have how i if in is it its my of on or that the this to was what "
    "when where which who why will with do does can should you your me we"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())


def words(text: str) -> list[str]:
    """Lower-case word and number tokens without stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


class ChunkBM25:
    """Postings over `texts` (positions 0..n-1); `search` returns the best positions for a query."""

    def __init__(self, texts: Sequence[str]) -> None:
        vocab: dict[str, int] = {}
        rows: list[list[int]] = []
        counts: list[list[int]] = []
        lengths = np.zeros(len(texts), np.float64)
        for pos, text in enumerate(texts):
            tf: dict[int, int] = {}
            ws = words(text)
            lengths[pos] = len(ws)
            for w in ws:
                t = vocab.setdefault(w, len(vocab))
                tf[t] = tf.get(t, 0) + 1
            for t, c in tf.items():
                while len(rows) <= t:
                    rows.append([])
                    counts.append([])
                rows[t].append(pos)
                counts[t].append(c)
        self.vocab = vocab
        self.n = len(texts)
        avgdl = float(lengths.mean()) if self.n else 1.0
        norm = K1 * (1 - B + B * lengths / max(avgdl, 1e-9))
        self._post: list[tuple[np.ndarray, np.ndarray]] = []
        for docs, cs in zip(rows, counts, strict=True):
            d = np.asarray(docs, np.int64)
            tf = np.asarray(cs, np.float64)
            idf = math.log(1 + (self.n - len(d) + 0.5) / (len(d) + 0.5))
            self._post.append((d, idf * tf / (tf + norm[d])))

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[int]:
        """Positions of the k best chunks with a positive score (best first; ties by position).
        `allowed`: a boolean mask over positions that may be returned."""
        scores = np.zeros(self.n, np.float64)
        for w in words(query):
            t = self.vocab.get(w)
            if t is not None:
                d, s = self._post[t]
                np.add.at(scores, d, s)
        if allowed is not None:
            scores[~allowed] = 0.0
        hits = np.flatnonzero(scores > 0)
        if hits.size > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        return [int(i) for i in hits[np.lexsort((hits, -scores[hits]))]]
