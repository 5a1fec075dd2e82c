"""FAISS dense index over chunk vectors (inner product of L2-normalised vectors = cosine).

The index is also the vector store: vectors are kept once, as float16 (scores move by ~1e-3, far
below the gaps that decide a ranking), and a new generation copies the vectors of unchanged chunks
out of the previous one by chunk id. Up to `exact_max` chunks (200k by default: ~150 MB at 384
dims, a few ms per query on CPU) every vector is scanned (exact search); above it HNSW (M=32) over
the same float16 storage answers in well under a millisecond. Ids are the docstore's chunk ids.
With faiss-gpu and CUDA present a loaded exact index is searched on the GPU; files on disk are
always CPU indexes.
"""

from __future__ import annotations

from pathlib import Path

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
