"""Reciprocal-rank fusion of dense and BM25 results, as the benchmark's hybrid retriever."""

from __future__ import annotations


def hybrid(dense: list[tuple[int, float]], bm25: list[tuple[int, float]], k0: int = 60) -> list[int]:
    """Chunk ids ordered by summed 1/(k0 + rank) over both rankings."""
    score: dict[int, float] = {}
    for ranking in (dense, bm25):
        for r, (cid, _) in enumerate(ranking):
            score[cid] = score.get(cid, 0.0) + 1.0 / (k0 + r + 1)
    return sorted(score, key=lambda c: -score[c])
