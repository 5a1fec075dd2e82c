"""Dense search cost on this machine, for docs/scaling.md: memory and per-query latency of exact
(flat) search at 10k, 100k and 1M vectors, HNSW at 100k (build time, latency, recall@10 against
flat), and the two vector-store backends (FAISS, embedded Qdrant) on 10k with and without filters.

    PYTHONPATH=$PWD python bench/scale/vectorstores.py --out bench/results/raw/scale_vectors.json

Vectors are random clustered 384-dim unit rows (MiniLM's width); search cost depends on the count
and width, not on where the vectors came from. Latencies are one query at a time (an `ask`),
median of --queries, with FAISS on --threads threads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DIM = 384


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = unit(centres[rng.integers(0, 1000, e - s)] + 0.8 * rng.standard_normal((e - s, DIM)))
    return out


def latency(search, queries: np.ndarray) -> float:
    """Median milliseconds of one single-query search."""
    ts = []
    for q in queries:
        t0 = time.perf_counter()
        search(q[None, :])
        ts.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(ts)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-n", type=int, default=1_000_000)
    args = ap.parse_args()
    import faiss

    from gdn2_ingest.dense import HNSW_M
    from gdn2_ingest.errors import VectorStoreError
    from gdn2_ingest.vectorstores import Where, open_store

    faiss.omp_set_num_threads(args.threads)
    res: dict = {"machine": "2-core CPU (this dev machine)", "dim": DIM, "threads": args.threads,
                 "load_start": os.getloadavg()[0], "flat": [], "hnsw": [], "stores": []}  # fmt: skip
    queries = unit(np.random.default_rng(9).standard_normal((args.queries, DIM)) + data(args.queries, 5))
    for n in (10_000, 100_000, 1_000_000):
        if n > args.max_n:
            continue
        x = data(n)
        for name, make in [("flat-fp32", lambda: faiss.IndexFlatIP(DIM)),
                           ("flat-fp16", lambda: faiss.IndexScalarQuantizer(
                               DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT))]:  # fmt: skip
            ix = make()
            t0 = time.perf_counter()
            ix.train(x[: min(n, 10_000)])
            ix.add(x)
            add_s = time.perf_counter() - t0
            res["flat"].append({"index": name, "n": n, "add_s": round(add_s, 2),
                                "bytes_per_vector": 4 * DIM if name == "flat-fp32" else 2 * DIM,
                                "ms_per_query": latency(lambda q, ix=ix: ix.search(q, 10), queries),
                                "load": os.getloadavg()[0]})  # fmt: skip
            print(res["flat"][-1], flush=True)
            if n == 100_000 and name == "flat-fp16":
                truth = ix.search(queries, 10)[1]
                h = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
                h.hnsw.efConstruction = 80
                h.hnsw.efSearch = 128
                t0 = time.perf_counter()
                h.train(x[:10_000])
                h.add(x)
                build = time.perf_counter() - t0
                got = h.search(queries, 10)[1]
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])
                ms = latency(lambda q, h=h: h.search(q, 10), queries)
                res["hnsw"].append({"n": n, "M": HNSW_M, "efSearch": 128, "build_s": round(build, 1),
                                    "ms_per_query": ms, "recall_at_10": round(float(recall), 4),
                                    "load": os.getloadavg()[0]})  # fmt: skip
                print(res["hnsw"][-1], flush=True)
            del ix
        del x

    # the backends on 10k rows with domain/path payloads
    n = 10_000
    x = data(n, 3)
    ids = np.arange(n, dtype=np.int64)
    domains = [("legal", "support", "code")[i % 3] for i in range(n)]
    paths = [f"/corpus/{domains[i]}/f{i % 50}.txt" for i in range(n)]
    for kind, opts in [("faiss", {}), ("qdrant", {"exact": True})]:
        try:
            store = open_store(kind, DIM, **opts)
        except VectorStoreError as exc:  # the qdrant extra is not installed
            res["stores"].append({"store": kind, "error": str(exc)})
            continue
        t0 = time.perf_counter()
        store.add(ids, x, domains, paths)
        add_s = time.perf_counter() - t0
        res["stores"].append({
            "store": kind + (" (embedded)" if kind == "qdrant" else ""), "n": n, "add_s": round(add_s, 2),
            "ms_per_query": latency(lambda q, s=store: s.search(q, 10), queries[:20]),
            "ms_per_filtered_query": latency(
                lambda q, s=store: s.search(q, 10, Where(domain="legal", path="/corpus/legal")), queries[:20]
            ),
            "load": os.getloadavg()[0],
        })  # fmt: skip
        print(res["stores"][-1], flush=True)
        store.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
