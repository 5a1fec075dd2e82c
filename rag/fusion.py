"""Reciprocal rank fusion of ranked lists (dense and BM25), with a weight per list.

    score(d) = sum_i  w_i / (k + rank_i(d))        rank_i starting at 1

RRF needs no score calibration between retrievers (cosine vs BM25 live on different scales), which
is why hybrid systems use it; the weights let a corpus favour keywords (code, clause numbers) or meaning.
"""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[tuple[int, float]]],
    weights: Sequence[float] | None = None,
    k: int = 60,
) -> list[tuple[int, float]]:
    """Fuse lists of `(id, raw_score)` (best first) into one list of `(id, fused_score)`, best first.

    Ties are broken by the best rank the id reached in any list, then by id, so results are stable.
    """
    if weights is None:
        weights = [1.0] * len(ranked_lists)
    if len(weights) != len(ranked_lists):
        raise ValueError(f"got {len(weights)} weights for {len(ranked_lists)} ranked lists")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    fused: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for hits, weight in zip(ranked_lists, weights, strict=True):
        if weight == 0:
            continue
        seen: set[int] = set()
        rank = 0
        for item_id, _score in hits:
            # a retriever that returns an id twice counts it once, at its better rank
            if item_id in seen:
                continue
            seen.add(item_id)
            rank += 1
            fused[item_id] = fused.get(item_id, 0.0) + weight / (k + rank)
            best_rank[item_id] = min(best_rank.get(item_id, rank), rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], best_rank[kv[0]], kv[0]))
