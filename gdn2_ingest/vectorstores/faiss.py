"""The embedded backend: exact inner product in FAISS, filters as an id selector."""

from __future__ import annotations

import numpy as np

from gdn2_ingest.vectorstores.base import Hits, Where, check_rows, path_keys


class FaissStore:
    """IndexIDMap2 over IndexFlatIP: exact search, deletes by id; the domain and path of each row are
    kept beside it, and a filtered search passes FAISS the ids the filter admits (an IDSelector), so
    a filter never shortens the top-k the way filtering after the search would."""

    def __init__(self, dim: int) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._domain: dict[int, str] = {}
        self._keys: dict[int, list[str]] = {}  # path_keys of each row's path

    def add(self, ids: np.ndarray, vectors: np.ndarray, domains: list[str], paths: list[str]) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        check_rows(self.dim, ids, vectors, domains, paths)
        self.delete(ids)
        self.index.add_with_ids(vectors, ids)
        for i, d, p in zip(ids.tolist(), domains, paths, strict=True):
            self._domain[i] = d
            self._keys[i] = path_keys(p)

    def delete(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        known = np.array([i for i in ids.tolist() if i in self._domain], dtype=np.int64)
        if len(known):
            self.index.remove_ids(self._faiss.IDSelectorBatch(known))
        for i in known.tolist():
            del self._domain[i], self._keys[i]

    def _admitted(self, where: Where) -> np.ndarray:
        folder = where.folder()
        anyof = None if where.any_paths is None else {p.rstrip("/") or "/" for p in where.any_paths}
        return np.array(
            [i for i, d in self._domain.items()
             if (where.domain is None or d == where.domain) and (folder is None or folder in self._keys[i])
             and (anyof is None or not anyof.isdisjoint(self._keys[i]))],
            dtype=np.int64,
        )  # fmt: skip

    def search(self, queries: np.ndarray, k: int, where: Where | None = None) -> Hits:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        params = None
        if where is not None and where.active:
            allowed = self._admitted(where)
            if not len(allowed):
                return [[] for _ in range(len(queries))]
            params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorBatch(allowed))
        k = min(k, self.index.ntotal)
        if k <= 0:
            return [[] for _ in range(len(queries))]
        scores, ids = self.index.search(queries, k, params=params)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def count(self) -> int:
        return int(self.index.ntotal)

    def close(self) -> None:
        pass
