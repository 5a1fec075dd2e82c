"""Hybrid retrieval: dense (FAISS) + BM25, fused by weighted RRF, filtered, near-duplicates dropped.

Steps of `HybridRetriever.retrieve`:
1. ask each retriever for `candidates` hits (5x more when a filter is set, since filtering comes after,
   and 5x more again while a filter keeps fewer than `k` and the retrievers have more to give); an
   index whose vector store filters (`Index.filters_dense`: Qdrant) gets the domain and the files the
   path glob matches pushed into its dense search, which then ranks only chunks that can pass;
2. fuse the two ranked lists with weighted reciprocal rank fusion;
3. fetch chunks in fused order, in batches, keeping those that pass the metadata filter and are not
   near-duplicates of a better-ranked kept chunk, until `k` are kept;
4. return them as `Passage`s with fused and raw scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from gdn2_rag.config import RAGConfig
from gdn2_rag.dedup import NearDuplicateFilter
from gdn2_rag.errors import RagError
from gdn2_rag.filters import MetadataFilter
from gdn2_rag.fusion import reciprocal_rank_fusion
from gdn2_rag.threads import limited_threads
from gdn2_rag.types import Passage

# with a filter active we over-fetch this many times, since most hits may be filtered away
FILTER_OVERFETCH = 5
# smallest docstore fetch: one SQLite round trip is cheap, many are not
MIN_FETCH = 32
# a path glob matching more files than this is not pushed into the vector store's filter (a request
# naming thousands of paths costs more than it saves); the filter after fusion still applies
PUSHED_PATHS_MAX = 1000


@dataclass
class Retrieved:
    """Passages plus the raw chunks behind them (context assembly needs char offsets and neighbours)."""

    passages: list[Passage]
    chunks: list  # ingest.Chunk, same order as passages
    dropped_duplicates: int = 0


class HybridRetriever:
    """Retrieval over an `ingest.Index` (or anything with its search/get_chunks methods)."""

    def __init__(self, index, config: RAGConfig | None = None, glob_files: dict | None = None) -> None:
        """glob_files: a cache of the files each path glob matches, shared across calls on one index
        view (RAG keeps one per view); None computes them per call."""
        self.index = index
        self.config = config or RAGConfig()
        self.glob_files = {} if glob_files is None else glob_files

    def retrieve(
        self, query: str, k: int = 10, flt: MetadataFilter | None = None, candidates: int | None = None
    ) -> Retrieved:
        if not isinstance(query, str) or not query.strip():
            raise RagError("the query is empty; give a question or search words")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cfg = self.config
        flt = flt or MetadataFilter()
        n = max(candidates or cfg.candidates, k)
        if flt.active:
            n *= FILTER_OVERFETCH
        where = self._pushed(flt)
        while True:
            lists = self._search(query, n, where)
            kept, dropped, score_of = self._fuse_and_fetch(lists, k, flt)
            # a narrow filter can reject every candidate while matching chunks rank lower: widen the
            # search until k are kept or the retrievers have nothing more to give
            exhausted = all(len(hits) < n for hits in lists)
            if len(kept) == k or not flt.active or exhausted:
                break
            n *= FILTER_OVERFETCH
        raw = _raw_scores(lists, [cfg.dense_weight > 0, cfg.bm25_weight > 0])
        passages = [_to_passage(c, score_of[c.id], raw, rank) for rank, c in enumerate(kept, start=1)]
        return Retrieved(passages, kept, dropped_duplicates=dropped)

    def _pushed(self, flt: MetadataFilter):
        """The part of `flt` the index's vector store can apply inside dense search (a
        gdn2_ingest.vectorstores.Where), or None: no filter, or a store that cannot (FAISS)."""
        if not flt.active or not getattr(self.index, "filters_dense", False):
            return None
        from gdn2_ingest.vectorstores import Where

        files = None
        if flt.path_glob is not None:
            if flt.path_glob not in self.glob_files:
                self.glob_files[flt.path_glob] = tuple(
                    p for p in self.index.live_paths() if flt.matches_path(p)
                )
            files = self.glob_files[flt.path_glob]
            if len(files) > PUSHED_PATHS_MAX:
                files = None
        if flt.domain is None and files is None:
            return None
        return Where(domain=flt.domain, any_paths=files)

    def _search(self, query: str, n: int, where=None) -> list[list[tuple[int, float]]]:
        """The ranked hit lists of the active retrievers (dense, then BM25), `n` each; `where` (from
        `_pushed`) goes to dense search."""
        cfg = self.config
        lists = []
        if cfg.dense_weight > 0:
            with limited_threads(cfg.retrieval_threads):
                if where is None:
                    lists.append(self.index.search_dense(query, n))
                else:
                    lists.append(self.index.search_dense(query, n, where))
        if cfg.bm25_weight > 0:
            lists.append(self.index.search_bm25(query, n))
        return lists

    def _fuse_and_fetch(self, lists, k: int, flt: MetadataFilter) -> tuple[list, int, dict[int, float]]:
        """Fuse the lists, then fetch chunks in fused order until `k` pass the filter and de-duplication."""
        cfg = self.config
        weights = [w for w in (cfg.dense_weight, cfg.bm25_weight) if w > 0]
        fused = reciprocal_rank_fusion(lists, weights, k=cfg.rrf_k)
        score_of = dict(fused)
        ids = [i for i, _ in fused]
        dedup = NearDuplicateFilter(cfg.dedup_threshold)
        kept: list = []
        dropped = 0
        batch = max(2 * k, MIN_FETCH)
        for start in range(0, len(ids), batch):
            for chunk in self.index.get_chunks(ids[start : start + batch]):
                if not flt.matches(chunk):
                    continue
                if dedup.is_duplicate(chunk):
                    dropped += 1
                    continue
                kept.append(chunk)
                if len(kept) == k:
                    return kept, dropped, score_of
        return kept, dropped, score_of


def _raw_scores(lists, active) -> dict[str, dict[int, float]]:
    names = [n for n, on in zip(("dense", "bm25"), active, strict=True) if on]
    return {name: {i: s for i, s in reversed(hits)} for name, hits in zip(names, lists, strict=True)}


def _to_passage(chunk, score: float, raw: dict[str, dict[int, float]], rank: int) -> Passage:
    dense = raw.get("dense", {}).get(chunk.id)
    bm25 = raw.get("bm25", {}).get(chunk.id)
    return Passage(
        chunk_id=int(chunk.id),
        path=str(chunk.path),
        text=chunk.text,
        score=float(score),
        line_start=int(chunk.line_start),
        line_end=int(chunk.line_end),
        domain=chunk.domain or "",
        title=chunk.title or "",
        section=chunk.section or "",
        page=chunk.page,
        dense_score=None if dense is None else float(dense),
        bm25_score=None if bm25 is None else float(bm25),
        rank=rank,
    )
