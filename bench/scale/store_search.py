"""`RAG.search` on ~10k real chunks with the dense part in FAISS flat, FAISS HNSW and embedded Qdrant:
latency p50/p99 and top-10 agreement, side by side in one run on one machine.

    PYTHONPATH=$PWD python bench/scale/store_search.py --out bench/results/raw/scale_store_search.json \\
        [--vectors-from INDEX]

1. Three indexes of the same files (bench/rag/natural/corpus.py: licenses, man pages, standard-library
   modules; about 9,600 chunks): the default (FAISS, exact float16 scan), FAISS HNSW (dense_exact_max
   below the chunk count, so the one segment is HNSW, M=32, efSearch 128) and Qdrant embedded in a
   folder (`--vector-store qdrant --qdrant-path`; embedded Qdrant always searches exactly). The
   vectors are MiniLM's, embedded once: with --vectors-from, read back from an existing index of
   the same files by the hash of each chunk's embedded text (the chunks it lacks are embedded).
2. The 235 hand-written questions of bench/data/natural_dev.jsonl, asked through `RAG.search(q, k=10)`
   (query embedding, dense + BM25 candidates, fusion, docstore fetch), one at a time, after one
   warm-up pass; then the same with each question's domain as a filter (pushed into Qdrant's filter);
   then the dense search alone (`Index.search_vector` of the ready query vector, 200 candidates as
   `search` asks for), and for Qdrant the same search with the generation filter it leaves out
   while the collection holds exactly the live generation's points (gdn2_ingest.dense_qdrant
   .SearchFilter; a collection with tombstoned or orphan points, or a server, always filters).
   Latencies: p50 and p99 in ms, with the 1-minute load average.
3. Agreement with FAISS flat, the reference: top-10 lists identical (ids and order), and the mean
   overlap of the top-10 sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def corpus_files() -> list[str]:
    cmd = [sys.executable, str(ROOT / "bench/rag/natural/corpus.py")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.split("\n") if f]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]  # as gdn2_ingest.pipeline names texts


class CachedEmbedder:
    """The real embedder, with vectors looked up by the hash of the embedded text first (so the three
    indexes share one embedding of the corpus)."""

    def __init__(self, real, cache: dict[str, np.ndarray]) -> None:
        self.real, self.cache = real, cache
        self.dim, self.max_tokens = real.dim, real.max_tokens
        self.embedded = 0

    def identity(self) -> dict:
        return self.real.identity()

    def load_tokenizer(self):
        return self.real.load_tokenizer()

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if _sha(t) not in self.cache]
        if missing:
            self.embedded += len(missing)
            for t, v in zip(missing, self.real.embed(missing), strict=True):
                self.cache[_sha(t)] = np.asarray(v, dtype=np.float32)
        return np.stack([self.cache[_sha(t)] for t in texts])


def cached_vectors(index_dir: Path | None) -> dict[str, np.ndarray]:
    """embed hash -> vector of every live chunk of an existing index."""
    if index_dir is None:
        return {}
    from gdn2_ingest import Index

    out: dict[str, np.ndarray] = {}
    with Index.open(index_dir) as ix:
        for seg in ix.segments:
            ids, hashes = seg.docstore.ids_and_hashes()
            live = ~np.isin(ids, seg.dead_ids)
            vecs = ix.vectors(ids[live])
            out.update(zip(np.asarray(hashes)[live].tolist(), vecs, strict=True))
    return out


def pct(ts: list[float]) -> dict:
    a = 1000 * np.asarray(ts)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def timed(fn, items) -> tuple[list, list[float]]:
    out, ts = [], []
    for x in items:
        t0 = time.perf_counter()
        out.append(fn(x))
        ts.append(time.perf_counter() - t0)
    return out, ts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--vectors-from", type=Path, help="an index of the same files to read the vectors from")
    ap.add_argument("--work", type=Path, help="folder for the three indexes (default: a temp folder)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Local mode")
    from gdn2_ingest import IngestConfig, ingest_paths
    from gdn2_ingest.config import VectorStoreConfig
    from gdn2_ingest.embed import SentenceTransformerEmbedder
    from gdn2_rag import RAG, RAGConfig

    real = SentenceTransformerEmbedder()
    emb = CachedEmbedder(real, cached_vectors(args.vectors_from))
    files = corpus_files()
    questions = [
        json.loads(line) for line in (ROOT / "bench/data/natural_dev.jsonl").read_text().splitlines()
    ]
    work = args.work or Path(tempfile.mkdtemp(prefix="store-search-"))
    stores = {
        "faiss flat": IngestConfig(embedder_factory=lambda: emb),
        "faiss hnsw": IngestConfig(embedder_factory=lambda: emb, dense_exact_max=1000),
        "qdrant embedded": IngestConfig(
            embedder_factory=lambda: emb, vector_store=VectorStoreConfig("qdrant", path=str(work / "qdrant"))
        ),
    }
    res: dict = {"machine": "2-core CPU (this dev machine)", "files": len(files), "questions": len(questions),
                 "retrieval_threads": RAGConfig().retrieval_threads, "stores": {}}  # fmt: skip
    tops: dict[str, list[list[int]]] = {}
    for name, cfg in stores.items():
        index_dir = work / name.replace(" ", "-")
        t0 = time.perf_counter()
        report = ingest_paths(index_dir, files, cfg, progress=False)
        row = {"ingest_s": round(time.perf_counter() - t0, 1), "chunks": report.chunks_total,
               "embedded": emb.embedded}  # fmt: skip
        rag = RAG.open(index_dir, config=RAGConfig(use_reader=False), embedder=real)
        row["dense_kind"] = rag.info().dense_kind
        qs = [q["question"] for q in questions]
        timed(lambda q, rag=rag: rag.search(q, k=10), qs)  # warm-up: embedder, caches
        row["load_before"] = round(os.getloadavg()[0], 2)
        found, ts = timed(lambda q, rag=rag: [p.chunk_id for p in rag.search(q, k=10)], qs)
        row["search"] = pct(ts)
        _, ts = timed(lambda q, rag=rag: rag.search(q["question"], k=10, domain=q["domain"]), questions)
        row["search_domain_filter"] = pct(ts)
        qvecs = real.embed(qs)
        index = rag.index
        _, ts = timed(lambda v, index=index: index.search_vector(v, 200), qvecs)
        row["dense_200"] = pct(ts)
        if cfg.vector_store is not None:
            from gdn2_ingest import dense_qdrant

            raw = dense_qdrant.connect(dense_qdrant.recorded(index.manifest), real.dim)
            view = dense_qdrant.view_of(index.generation, index.manifest)
            _, ts = timed(lambda v, raw=raw, view=view: raw.search(v, 200, view=view), qvecs)
            row["dense_200_generation_filter"] = pct(ts)
            raw.close()
        row["load_after"] = round(os.getloadavg()[0], 2)
        tops[name] = found
        res["stores"][name] = row
        print(name, row, flush=True)
        rag.close()
    ref = tops["faiss flat"]
    for name, found in tops.items():
        res["stores"][name]["top10_identical"] = sum(a == b for a, b in zip(found, ref, strict=True))
        res["stores"][name]["top10_overlap"] = round(
            float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, ref, strict=True)])), 4
        )
    print(f"\n{'store':<16} {'chunks':>6} {'search p50/p99 ms':>18} {'+domain p50/p99':>16} "
          f"{'dense p50/p99':>14} {'top10 same':>10} {'overlap':>8}")  # fmt: skip
    for name, r in res["stores"].items():
        print(f"{name:<16} {r['chunks']:>6} {r['search']['p50_ms']:>8} / {r['search']['p99_ms']:<7} "
              f"{r['search_domain_filter']['p50_ms']:>7} / {r['search_domain_filter']['p99_ms']:<6} "
              f"{r['dense_200']['p50_ms']:>6} / {r['dense_200']['p99_ms']:<6} "
              f"{r['top10_identical']:>5}/{len(questions):<4} {r['top10_overlap']:>8}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
