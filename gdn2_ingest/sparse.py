"""BM25 keyword search over index segments, scored with the statistics of the whole live index.

Each segment stores raw postings, not scores: a vocabulary, for every term the positions of the
chunks holding it and its frequency there (CSC arrays), each chunk's length in tokens, and the
chunk ids by position. Texts are tokenised by bm25s (lower-case words, English stop words out)
over each chunk's "title\\nsection\\ntext".

Scores are BM25 in Lucene's form (bm25s's default, k1=1.5, b=0.75):

    score(q, d) = sum_{t in q}  idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Equal scores are ordered by a key hashed from the chunk's path and text, then by chunk id, so the
order of ties depends on the chunks, not on which segment (or which id) an update gave them: an
updated index and one rebuilt from the same files rank ties alike.

N, avgdl and df(t) are taken over the LIVE chunks of ALL segments: N and the sum of lengths are
the segments' totals minus the tombstoned chunks' (kept in `KeywordSegment.live_docs/live_len`),
and df(t) is counted at query time over the live postings of t in every segment. So a set of
segments with tombstones scores every chunk exactly as one index rebuilt from the live chunks
would (tests/ingest/test_segments.py compares them, and a one-segment index against bm25s).
Precomputed per-segment score matrices (bm25s, SQLite FTS5's bm25()) bake each segment's own N,
df and avgdl into the scores and cannot be merged exactly; bench/results/index.md measures FTS5.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STOPWORDS = "en"
K1 = 1.5
B = 0.75
FILES = ("vocab.json", "indptr.npy", "docs.npy", "tfs.npy", "doclen.npy", "ids.npy", "keys.npy")


def tie_key(path: str, text: str) -> int:
    """A signed 64-bit hash of a chunk's path and text (orders equal scores)."""
    digest = hashlib.blake2b(f"{path}\0{text}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def keyword_terms(text: str) -> list[str]:
    """The distinct keyword terms of `text` in order, as the index tokenizes (lowercase, no stopwords)."""
    return list(dict.fromkeys(_tok([text])[0]))


def _tok(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=False)


@dataclass
class Postings:
    """One segment's keyword data; positions index `ids` (chunk ids, ascending)."""

    vocab: dict[str, int]
    indptr: np.ndarray  # [n_terms + 1] int64
    docs: np.ndarray  # [nnz] int32 positions, ascending within a term
    tfs: np.ndarray  # [nnz] float32
    doclen: np.ndarray  # [n_docs] float32 tokens per chunk
    ids: np.ndarray  # [n_docs] int64 chunk ids
    keys: np.ndarray  # [n_docs] int64 tie keys (hash of path and text)

    @classmethod
    def from_triples(cls, vocab: dict[str, int], terms, docs, tfs, doclen, ids, keys) -> Postings:
        """Sort (term, position, tf) triples into CSC form."""
        terms = np.asarray(terms, dtype=np.int64)
        docs = np.asarray(docs, dtype=np.int64)
        order = np.lexsort((docs, terms))
        counts = np.bincount(terms, minlength=len(vocab))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            vocab, indptr, docs[order].astype(np.int32), np.asarray(tfs, np.float32)[order],
            np.asarray(doclen, np.float32), np.asarray(ids, np.int64), np.asarray(keys, np.int64),
        )  # fmt: skip

    @classmethod
    def build(cls, rows: list[tuple[int, str, str, str, str]]) -> Postings:
        """rows: (chunk id, path, title, section, text), ascending ids."""
        toks = _tok([f"{t}\n{s}\n{x}" for _, _, t, s, x in rows]) if rows else []
        vocab: dict[str, int] = {}
        terms, docs, tfs = [], [], []
        for pos, words in enumerate(toks):
            counts: dict[int, int] = {}
            for w in words:
                tid = vocab.setdefault(w, len(vocab))
                counts[tid] = counts.get(tid, 0) + 1
            terms += counts.keys()
            docs += [pos] * len(counts)
            tfs += counts.values()
        doclen = [len(w) for w in toks]
        keys = [tie_key(p, x) for _, p, _, _, x in rows]
        return cls.from_triples(vocab, terms, docs, tfs, doclen, [r[0] for r in rows], keys)

    @classmethod
    def merge(cls, parts: list[tuple[Postings, np.ndarray]]) -> Postings:
        """One segment from several, keeping only the positions where `keep` is True (no re-tokenising).
        parts must be in ascending chunk-id order."""
        vocab: dict[str, int] = {}
        terms, docs, tfs, doclen, ids, keys = [], [], [], [], [], []
        base = 0
        for p, keep in parts:
            remap = np.full(len(p.ids), -1, dtype=np.int64)
            remap[keep] = base + np.arange(int(keep.sum()))
            term_map = np.array([vocab.setdefault(w, len(vocab)) for w in p.vocab], dtype=np.int64)
            own = np.repeat(np.arange(len(p.vocab)), np.diff(p.indptr))
            live = keep[p.docs]
            terms.append(term_map[own[live]] if len(term_map) else own[live])
            docs.append(remap[p.docs[live]])
            tfs.append(p.tfs[live])
            doclen.append(p.doclen[keep])
            ids.append(p.ids[keep])
            keys.append(p.keys[keep])
            base += int(keep.sum())
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        return cls.from_triples(
            vocab, cat(terms, np.int64), cat(docs, np.int64), cat(tfs, np.float32),
            cat(doclen, np.float32), cat(ids, np.int64), cat(keys, np.int64),
        )  # fmt: skip

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "vocab.json").write_text(json.dumps(list(self.vocab)))
        for name in FILES[1:]:
            np.save(out_dir / name, getattr(self, name[:-4]))

    @classmethod
    def load(cls, directory: Path) -> Postings:
        words = json.loads((directory / "vocab.json").read_text())
        arrays = {n[:-4]: np.load(directory / n, mmap_mode="r") for n in FILES[1:]}
        p = cls({w: i for i, w in enumerate(words)}, **arrays)
        n = len(p.ids)
        if (
            len(p.indptr) != len(words) + 1
            or len(p.doclen) != n
            or len(p.keys) != n
            or len(p.docs) != len(p.tfs)
        ):
            raise ValueError("the postings arrays disagree in length")
        return p


class KeywordSegment:
    """A segment's postings with its tombstones applied (a live mask over positions)."""

    def __init__(self, postings: Postings, dead_ids: np.ndarray | None = None) -> None:
        self.p = postings
        self.live = np.ones(len(postings.ids), dtype=bool)
        if dead_ids is not None and len(dead_ids):
            self.live[np.isin(postings.ids, dead_ids)] = False
        self.live_docs = int(self.live.sum())
        self.live_len = float(np.asarray(postings.doclen, np.float64)[self.live].sum())
        self.all_live = self.live_docs == len(postings.ids)

    def postings_of(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(positions, tfs) of the live chunks holding `term`."""
        tid = self.p.vocab.get(term)
        if tid is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        lo, hi = int(self.p.indptr[tid]), int(self.p.indptr[tid + 1])
        docs, tfs = np.asarray(self.p.docs[lo:hi]), np.asarray(self.p.tfs[lo:hi])
        if not self.all_live:
            keep = self.live[docs]
            docs, tfs = docs[keep], tfs[keep]
        return docs, tfs


class KeywordSearch:
    """BM25 over a fixed set of segments (one open generation): N and avgdl are computed once; each
    query term's live postings, their tf parts and its live df are computed at its first use and kept,
    so a query then costs one scatter-add per term, as over bm25s's precomputed scores."""

    def __init__(self, segments: list[KeywordSegment]) -> None:
        self.segments = segments
        self.n_docs = sum(s.live_docs for s in segments)
        self.avgdl = sum(s.live_len for s in segments) / self.n_docs if self.n_docs else 0.0
        self._terms: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}

    def _term(self, j: int, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(live positions, tf part) of `term` in segment j."""
        got = self._terms.get((j, term))
        if got is None:
            seg = self.segments[j]
            docs, tfs = seg.postings_of(term)
            tfs = np.asarray(tfs, np.float64)
            norm = K1 * (1 - B + B * np.asarray(seg.p.doclen[docs], np.float64) / self.avgdl)
            got = (docs, tfs / (tfs + norm))
            self._terms[(j, term)] = got
        return got

    def doc_freqs(self, text: str) -> dict[str, int]:
        """The keyword terms of `text` (this index's tokenization) -> live chunks holding each."""
        return {
            t: sum(len(self._term(j, t)[0]) for j in range(len(self.segments))) for t in keyword_terms(text)
        }

    def ids_with_all(self, terms: list[str]) -> np.ndarray:
        """The live chunk ids (ascending) that hold every one of `terms` (keyword terms, as tokenized)."""
        parts = []
        for j, seg in enumerate(self.segments):
            held = None
            for t in terms:
                docs = self._term(j, t)[0]
                held = docs if held is None else np.intersect1d(held, docs, assume_unique=True)
                if not len(held):
                    break
            if held is not None and len(held):
                parts.append(np.asarray(seg.p.ids)[held])
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score > 0) best first (module docstring)."""
        if k <= 0 or not query.strip() or self.n_docs == 0:
            return []
        # a repeated query word counts each time, as in bm25s
        terms = _tok([query])[0]
        posts = [[self._term(j, t) for t in terms] for j in range(len(self.segments))]
        df = [sum(len(seg_posts[i][0]) for seg_posts in posts) for i in range(len(terms))]
        idf = [math.log(1 + (self.n_docs - d + 0.5) / (d + 0.5)) for d in df]
        best: list[tuple[float, int, int]] = []
        for seg, seg_posts in zip(self.segments, posts, strict=True):
            if not any(len(d) for d, _ in seg_posts):
                continue
            # one pass over the query's postings; each chunk's terms are summed in query order
            docs = np.concatenate([d for d, _ in seg_posts])
            weights = np.concatenate([w * tfc for (_, tfc), w in zip(seg_posts, idf, strict=True)])
            scores = np.bincount(docs, weights=weights, minlength=len(seg.p.ids))
            top = _top(scores, k)
            best += [(float(scores[i]), int(seg.p.keys[i]), int(seg.p.ids[i])) for i in top]
        best.sort(key=lambda t: (-t[0], t[1], t[2]))
        return [(i, s) for s, _, i in best[:k]]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best positive scores and of every score tied with the k-th (ties are
    decided by key). Selecting among the scores above a threshold lowered from the maximum is much
    cheaper than a partition of every chunk's score."""
    best = scores.max(initial=0.0)
    if best <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = best / 2
    while True:
        cand = np.flatnonzero(scores >= threshold)
        if len(cand) >= k or threshold < best * 1e-6:
            break
        threshold /= 4
    if len(cand) < k:
        cand = np.flatnonzero(scores > 0)
    if len(cand) <= k:
        return cand
    kth = np.partition(scores[cand], len(cand) - k)[len(cand) - k]
    return cand[scores[cand] >= kth]


def search_segments(segments: list[KeywordSegment], query: str, k: int) -> list[tuple[int, float]]:
    """One query over `segments` without keeping anything (checks, tests); an open index keeps a
    KeywordSearch."""
    return KeywordSearch(segments).search(query, k)
