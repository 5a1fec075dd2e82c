"""Dense search over segments: exact (flat) segments merge exactly; how do HNSW segments merge?

    PYTHONPATH=$PWD .venv/bin/python bench/index/hnsw_merge.py --n 40000 --segments 4 \\
        --out bench/results/raw/index_hnsw_merge.json

Builds, over the same vectors, one HNSW index (what a full rebuild past `dense_exact_max` makes), S
HNSW segments (what merging S big compacted segments would search), and S flat segments; all with
gdn2_ingest.dense's settings (float16 storage, M=32, efConstruction 80, efSearch 128). Vectors are
clustered (unit vectors around 500 centres, so neighbours are meaningful as with real embeddings),
queries are noisy copies of stored vectors. Reports recall@10 against exact search, the top-10
agreement of the merged segments with the single index, and p50 query time on one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parents[1])]

from gdn2_ingest.dense import FaissSegment  # noqa: E402


def _vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((500, dim)).astype(np.float32)
    x = centres[rng.integers(0, 500, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _merged(segs: list[FaissSegment], q: np.ndarray, k: int) -> list[int]:
    hits = sorted((h for s in segs for h in s.search(q, k)), key=lambda h: (-h[1], h[0]))
    return [i for i, _ in hits[:k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    vecs = _vectors(args.n, args.dim, rng)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    picks = rng.integers(0, args.n, args.queries)
    qs = vecs[picks] + 0.3 * rng.standard_normal((args.queries, args.dim)).astype(np.float32) / np.sqrt(args.dim)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    res: dict = {"n": args.n, "dim": args.dim, "segments": args.segments, "queries": args.queries}
    t = time.perf_counter()
    one = FaissSegment.build(ids, vecs, args.dim, exact_max=0)
    res["build_one_hnsw_s"] = time.perf_counter() - t
    cuts = np.linspace(0, args.n, args.segments + 1).astype(int)
    t = time.perf_counter()
    segs = [FaissSegment.build(ids[a:b], vecs[a:b], args.dim, exact_max=0) for a, b in zip(cuts, cuts[1:], strict=False)]
    res["build_segments_hnsw_s"] = time.perf_counter() - t
    flat = FaissSegment.build(ids, vecs, args.dim, exact_max=args.n)
    flats = [FaissSegment.build(ids[a:b], vecs[a:b], args.dim, exact_max=args.n) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert one.kind == "hnsw" and flat.kind == "flat"
    faiss.omp_set_num_threads(1)
    rec_one, rec_seg, agree, flat_same = [], [], [], 0
    t_one, t_seg, t_flat = [], [], []
    for q in qs:
        exact = [i for i, _ in flat.search(q, 10)]
        t = time.perf_counter()
        a = [i for i, _ in one.search(q, 10)]
        t_one.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = _merged(segs, q, 10)
        t_seg.append(time.perf_counter() - t)
        t = time.perf_counter()
        flat_same += _merged(flats, q, 10) == exact
        t_flat.append(time.perf_counter() - t)
        rec_one.append(len(set(a) & set(exact)) / 10)
        rec_seg.append(len(set(b) & set(exact)) / 10)
        agree.append(len(set(a) & set(b)) / 10)
    res.update({
        "recall10_one_hnsw": statistics.mean(rec_one),
        "recall10_hnsw_segments": statistics.mean(rec_seg),
        "top10_overlap_segments_vs_one": statistics.mean(agree),
        "top10_identical_segments_vs_one": sum(r == 1.0 for r in agree),
        "flat_segments_identical_to_exact": flat_same,
        "p50_ms_one_hnsw": statistics.median(t_one) * 1000,
        "p50_ms_hnsw_segments": statistics.median(t_seg) * 1000,
        "p50_ms_flat_segments": statistics.median(t_flat) * 1000,
    })  # fmt: skip
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
