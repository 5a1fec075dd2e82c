"""Dense part of an index segment: FAISS over chunk vectors (inner product of L2-normalised vectors
= cosine), behind the small `VectorSegment` interface a segment needs (search with tombstones,
vectors by id, save/load), so another vector store can replace FAISS per segment.

The index is also the vector store: vectors are kept once, as float16 (scores move by ~1e-3, far
below the gaps that decide a ranking); an edit reads the vectors of unchanged chunk texts back by
chunk id, and compaction copies live vectors into the merged segment. A segment of up to
`exact_max` chunks (200k by default: ~150 MB at 384 dims, a few ms per query on CPU) is scanned
exactly; a bigger one (only compaction makes them) is HNSW (M=32) over the same float16 storage.
Exact segments merge exactly: the best k of each segment's exact best k are the exact best k of
the union, with the same float16 scores a single index would give. HNSW segments merge as well as
HNSW itself finds neighbours (bench/results/index.md measures the agreement). Ids are chunk ids.
With faiss-gpu and CUDA present a loaded exact index is searched on the GPU; files on disk are
always CPU indexes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

HNSW_M = 32


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("faiss is not installed: pip install faiss-cpu (or faiss-gpu)") from exc
    return faiss


def build_dense(ids: np.ndarray, vecs: np.ndarray, dim: int, exact_max: int):
    """A FAISS index with `ids` as external ids; kind is 'flat' or 'hnsw'."""
    faiss = _faiss()
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if len(ids) <= exact_max:
        base = faiss.IndexScalarQuantizer(dim, fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        base = faiss.IndexHNSWSQ(dim, fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 128
    index = faiss.IndexIDMap2(base)
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vecs, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )
    return index


def vectors_for(index, ids: np.ndarray) -> np.ndarray:
    """float32 vectors stored under `ids` (each must be in the index)."""
    if len(ids) == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))


def dense_kind(index) -> str:
    faiss = _faiss()
    base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return "hnsw" if isinstance(base, faiss.IndexHNSW) else "flat"


def save_dense(index, path: Path) -> None:
    """Write through a Python file, so a full disk or a file-size limit is an OSError with its errno
    (faiss's own writer turns it into a RuntimeError without one)."""
    faiss = _faiss()
    failed: list[OSError] = []
    with open(path, "wb") as f:

        def write(buf: bytes) -> int:
            try:
                f.write(buf)
            except OSError as exc:
                failed.append(exc)
                raise
            return len(buf)

        try:
            faiss.write_index(index, faiss.PyCallbackIOWriter(write))
        except RuntimeError:
            if failed:
                raise failed[0] from None
            raise


def load_dense(path: Path, use_gpu: bool | None = None):
    """Read an index; move it to GPU when faiss-gpu and a CUDA device are available (use_gpu=None)."""
    faiss = _faiss()
    index = faiss.read_index(str(path))
    want_gpu = use_gpu if use_gpu is not None else hasattr(faiss, "StandardGpuResources")
    if (
        want_gpu
        and hasattr(faiss, "get_num_gpus")
        and faiss.get_num_gpus() > 0
        and dense_kind(index) == "flat"
    ):
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, 0, index)
        index._gpu_res = res  # keep the resources alive as long as the index
    return index


def search_dense_index(index, qvec: np.ndarray, k: int) -> list[tuple[int, float]]:
    if index is None or index.ntotal == 0 or k <= 0:
        return []
    scores, ids = index.search(
        np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32), min(k, index.ntotal)
    )
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


class VectorSegment(Protocol):
    """What a segment needs from its vector store (FAISS here; a backend implements these five)."""

    kind: str
    ntotal: int

    def search(self, qvec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the best `k` live vectors, best first."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors stored under `ids`."""

    def stored_ids(self) -> np.ndarray | None:
        """Every stored id (dead ones included), or None when the store cannot list them."""

    def save(self, path: Path) -> None: ...


class FaissSegment:
    """A segment's FAISS index with its tombstones: dead ids are excluded inside the search (an
    IDSelector), so a segment still returns its best k live vectors."""

    def __init__(self, index, dead_ids: np.ndarray | None = None, ef_search: int = 128) -> None:
        self.index = index
        self.kind = dense_kind(index)
        self.ntotal = int(index.ntotal)
        self._params = None
        self.n_dead = 0 if dead_ids is None else len(dead_ids)
        if self.n_dead:
            faiss = _faiss()
            self._dead = np.ascontiguousarray(dead_ids, dtype=np.int64)
            self._sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._dead))
            if self.kind == "hnsw":
                self._params = faiss.SearchParametersHNSW(sel=self._sel, efSearch=ef_search)
            else:
                self._params = faiss.SearchParameters(sel=self._sel)

    @classmethod
    def build(cls, ids: np.ndarray, vecs: np.ndarray, dim: int, exact_max: int) -> FaissSegment:
        return cls(build_dense(ids, vecs, dim, exact_max))

    @classmethod
    def load(cls, path: Path, dead_ids: np.ndarray | None = None, use_gpu: bool | None = None):
        # a selector needs the CPU index; GPU search only where nothing is tombstoned
        gpu = use_gpu if dead_ids is None or not len(dead_ids) else False
        return cls(load_dense(path, use_gpu=gpu), dead_ids)

    def search(self, qvec: np.ndarray, k: int) -> list[tuple[int, float]]:
        live = self.ntotal - self.n_dead
        if live <= 0 or k <= 0:
            return []
        q = np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32)
        if self._params is None:
            scores, ids = self.index.search(q, min(k, self.ntotal))
        else:
            scores, ids = self.index.search(q, min(k, live), params=self._params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return vectors_for(self.index, ids)

    def stored_ids(self) -> np.ndarray | None:
        if not hasattr(self.index, "id_map"):
            return None
        return _faiss().vector_to_array(self.index.id_map)

    def save(self, path: Path) -> None:
        save_dense(self.index, path)
