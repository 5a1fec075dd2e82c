"""`rag upgrade` of a format-2 index built by the previous release (11d0981), against a fresh ingest.

    PYTHONPATH=$PWD .venv/bin/python bench/upgrade/upgrade_bench.py --work /tmp/upbench --chunks 10000 \\
        --out bench/results/raw/upgrade_10k.json

Steps:
1. extract the previous release's gdn2_ingest (`git archive 11d0981`) and, in a subprocess running
   it, ingest a synthetic corpus (bench/index/fakes.py: one paragraph per chunk, random-but-fixed
   384-dim vectors) into a format-2 index;
2. upgrade a copy of it with this version (`gdn2_ingest.upgrade.upgrade_index`): seconds and stages;
3. ingest the same corpus into a fresh format-3 index with the same embedder (time to re-ingest;
   a real embedder adds the embedding of every chunk on top);
4. compare the two for 200 queries: top-10 dense (a stored vector as the query) and BM25, ids and
   scores, and every chunk's row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
REPO = HERE.parents[1]
FAKES = REPO / "bench" / "index"
OLD_COMMIT = "11d0981"

OLD_BUILD = """
import sys, time
sys.path[:0] = [{old!r}, {fakes!r}]
from pathlib import Path
from fakes import RandomEmbedder
from gdn2_ingest import IngestConfig, ingest_paths, store
assert store.FORMAT_VERSION == 2
emb = RandomEmbedder()
t0 = time.perf_counter()
cfg = IngestConfig(embedder_factory=lambda: emb)
r = ingest_paths(Path({index!r}), [Path({docs!r})], cfg, progress=False)
print(r.chunks_total, time.perf_counter() - t0)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sys.path[:0] = [str(REPO), str(FAKES)]
    from fakes import RandomEmbedder, queries, write_corpus

    from gdn2_ingest import Index, IngestConfig, ingest_paths
    from gdn2_ingest.store import tree_bytes
    from gdn2_ingest.upgrade import upgrade_index

    shutil.rmtree(args.work, ignore_errors=True)
    old_code = args.work / "old"
    old_code.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "gdn2_ingest"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old_code)], input=archive, check=True)
    docs = args.work / "docs"
    write_corpus(docs, files=args.chunks // 10, paragraphs=10)
    v2 = args.work / "v2"
    script = OLD_BUILD.format(old=str(old_code), fakes=str(FAKES), index=str(v2), docs=str(docs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    line = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env)
    chunks, old_ingest_s = line.stdout.split()
    v2_bytes = tree_bytes(v2)

    up = args.work / "upgraded"
    shutil.copytree(v2, up)
    t0 = time.perf_counter()
    report = upgrade_index(up)
    upgrade_s = time.perf_counter() - t0

    emb = RandomEmbedder()
    fresh = args.work / "fresh"
    t0 = time.perf_counter()
    ingest_paths(fresh, [docs], IngestConfig(embedder_factory=lambda: emb), progress=False)
    fresh_s = time.perf_counter() - t0

    qs = queries(200)
    same_dense = same_bm25 = 0
    with Index.open(up, embedder=emb) as a, Index.open(fresh, embedder=emb) as b:
        ids = a.chunk_ids()
        rows_equal = bool(
            np.array_equal(ids, b.chunk_ids()) and a.get_chunks(list(ids)) == b.get_chunks(list(ids))
        )
        probe = ids[np.linspace(0, len(ids) - 1, len(qs)).astype(int)]
        for q, pid in zip(qs, probe, strict=True):
            v = a.vectors([pid])[0]
            same_dense += a.search_vector(v, 10) == b.search_vector(v, 10)
            same_bm25 += a.search_bm25(q, 10) == b.search_bm25(q, 10)
        seg_bytes = tree_bytes(up)
    result = {
        "chunks": int(chunks), "dim": 384, "v2_ingest_seconds_random_embedder": round(float(old_ingest_s), 2),
        "upgrade_seconds": round(upgrade_s, 2),
        "upgrade_stages": {k: round(v, 2) for k, v in report.stage_seconds.items()},
        "fresh_ingest_seconds_random_embedder": round(fresh_s, 2),
        "v2_bytes": v2_bytes, "v3_bytes": seg_bytes,
        "queries": len(qs), "dense_top10_identical": same_dense, "bm25_top10_identical": same_bm25,
        "chunk_rows_identical": rows_equal,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
