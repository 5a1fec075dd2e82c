"""The distributed backend: a Qdrant collection (a server or cluster, or embedded for tests)."""

from __future__ import annotations

import numpy as np

from gdn2_ingest.vectorstores.base import Hits, Where, check_rows, path_keys

# points per upsert request: large enough to amortise a round trip, small enough for the 32 MB
# default request limit of a Qdrant server (1,000 x 384 floats as JSON is about 4 MB)
UPSERT_BATCH = 1000


class QdrantStore:
    """A Qdrant collection of (id, vector, {domain, paths}) points with DOT distance (the vectors are
    already normalised, so this is cosine, scored exactly as FAISS scores it).

    Args:
        dim: vector width.
        collection: collection name; created when missing (with keyword indexes on domain and paths).
        url: a Qdrant server ("http://host:6333"); None runs Qdrant embedded in this process.
        location: embedded storage when `url` is None: ":memory:" or a folder (kept across runs).
        exact: search every point (the reference result) instead of Qdrant's HNSW graph; embedded
            Qdrant always searches exactly.
        api_key: for a server that requires one.
    """

    def __init__(
        self, dim: int, collection: str = "gdn2", url: str | None = None, location: str = ":memory:",
        exact: bool = False, api_key: str | None = None,
    ) -> None:  # fmt: skip
        try:
            from qdrant_client import QdrantClient, models
        except ImportError as exc:
            raise ImportError(
                f"the Qdrant store needs qdrant-client: pip install 'gdn2-rag[qdrant]' ({exc})"
            ) from exc
        self.models = models
        self.dim = dim
        self.collection = collection
        self.exact = exact
        if url is not None:
            self.client = QdrantClient(url=url, api_key=api_key)
        elif location == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(path=location)
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.DOT)
            )
            if url is not None:  # embedded Qdrant has no payload indexes (and warns about them)
                for field in ("domain", "paths"):
                    self.client.create_payload_index(collection, field, models.PayloadSchemaType.KEYWORD)
        got = self.client.get_collection(collection).config.params.vectors.size
        if got != dim:
            raise ValueError(f"Qdrant collection {collection!r} holds {got}-dim vectors, not {dim}")

    def add(self, ids: np.ndarray, vectors: np.ndarray, domains: list[str], paths: list[str]) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        check_rows(self.dim, ids, vectors, domains, paths)
        payloads = [{"domain": d, "paths": path_keys(p)} for d, p in zip(domains, paths, strict=True)]
        for s in range(0, len(ids), UPSERT_BATCH):
            e = s + UPSERT_BATCH
            batch = self.models.Batch(
                ids=ids[s:e].tolist(), vectors=vectors[s:e].tolist(), payloads=payloads[s:e]
            )
            self.client.upsert(self.collection, points=batch, wait=True)

    def delete(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).tolist()
        if ids:
            self.client.delete(self.collection, self.models.PointIdsList(points=ids), wait=True)

    def _filter(self, where: Where | None):
        if where is None:
            return None
        m = self.models
        must = []
        if where.domain is not None:
            must.append(m.FieldCondition(key="domain", match=m.MatchValue(value=where.domain)))
        if where.path is not None:
            must.append(m.FieldCondition(key="paths", match=m.MatchValue(value=where.folder())))
        return m.Filter(must=must) if must else None

    def search(self, queries: np.ndarray, k: int, where: Where | None = None) -> Hits:
        m = self.models
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        flt = self._filter(where)
        requests = [
            m.QueryRequest(query=q.tolist(), limit=k, filter=flt, params=m.SearchParams(exact=self.exact))
            for q in queries
        ]
        out = self.client.query_batch_points(self.collection, requests=requests)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in out]

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def close(self) -> None:
        self.client.close()
