"""Micro-batched /search: the queries of concurrent searches are embedded in one call.

On a CPU, embedding one short query with MiniLM costs ~22 ms while a batch of 16 costs ~4 ms a query,
and the rest of a search (BM25, FAISS, fusion, docstore) ~5 ms (2-core dev machine,
bench/results/serve.md). `SearchBatcher` gathers concurrent searches (gdn2_rag.batching.MicroBatcher),
embeds their queries in one call through `PrefetchingEmbedder`, then runs each search as usual; a
search's own embedding call finds its vector ready. Results are those of `RAG.search` (the same code
runs); only when the query vector is computed changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from gdn2_rag.batching import BatchSettings, MicroBatcher
from gdn2_rag.threads import limited_threads


class PrefetchingEmbedder:
    """An index's query embedder with a small cache that `prefetch` fills for a batch of queries.

    Everything else (identity, tokenizer, dims) is the wrapped embedder's, so the index accepts it as
    the embedder it was built with. The cache holds the last prefetched batch only.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def identity(self) -> dict:
        return self.inner.identity()

    def prefetch(self, texts: list[str]) -> None:
        """Embed `texts` in one call and keep their vectors for the next `embed` calls."""
        unique = list(dict.fromkeys(texts))
        vectors = self.inner.embed(unique)
        with self._lock:
            self._cache = dict(zip(unique, vectors, strict=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            hits = [self._cache.get(t) for t in texts]
        if all(h is not None for h in hits) and hits:
            return np.stack(hits)
        return self.inner.embed(texts)


@dataclass(frozen=True)
class SearchCall:
    query: str
    k: int = 10
    domain: str | None = None
    path_glob: str | None = None


class SearchBatcher:
    """Runs batches of `RAG.search` calls on one worker, their query embeddings in one call."""

    def __init__(self, rag, settings: BatchSettings) -> None:
        self.rag = rag
        embedder = getattr(rag, "embedder", None)
        self.embedder = embedder if isinstance(embedder, PrefetchingEmbedder) else None
        self.batcher: MicroBatcher[SearchCall, list] = MicroBatcher(self._run, settings)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def search(self, call: SearchCall) -> list:
        return await self.batcher.submit(call)

    def _run(self, calls: list[SearchCall]) -> list:
        if self.embedder is not None and len(calls) > 1:
            try:
                with limited_threads(self.rag.config.retrieval_threads):
                    self.embedder.prefetch([c.query for c in calls])
            except Exception:  # noqa: BLE001 - each search then embeds (and reports) on its own
                pass
        out: list = []
        for c in calls:
            try:
                out.append(self.rag.search(c.query, k=c.k, domain=c.domain, path_glob=c.path_glob))
            except Exception as exc:  # noqa: BLE001 - one bad search fails alone
                out.append(exc)
        return out
