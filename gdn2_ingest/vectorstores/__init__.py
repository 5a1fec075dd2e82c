"""Vector stores: where a segment's dense vectors live and are searched.

One small interface (`VectorStore`: add, delete, search with a domain/path filter, count) and two
backends:

  - `FaissStore` (default, embedded): an exact inner-product index in this process, the reference
    every other backend is tested against;
  - `QdrantStore`: a Qdrant collection, on a Qdrant server or cluster users already run (sharded
    and replicated past one machine), or embedded in this process (`location=":memory:"` or a
    folder) for tests and small setups. Needs the `qdrant` extra.

Vectors are L2-normalised float32 rows; scores are inner products (cosine), higher is closer.

    store = open_store("faiss", dim=384)          # or open_store("qdrant", dim=384, url="http://host:6333")
    store.add(ids, vecs, domains, paths)
    hits = store.search(qvecs, k=10, where=Where(domain="legal", path="/docs/contracts"))
"""

from __future__ import annotations

from gdn2_ingest.vectorstores.base import STORES, VectorStore, Where, open_store

__all__ = ["STORES", "VectorStore", "Where", "open_store"]
