"""Retrieval latency (p50/p95) of `RAG.search` on a ~100k-chunk index, CPU only.

How the index is built (stated in the results): the corpus is real text (lines of the Debian licenses
and the Python standard library, shuffled with a fixed seed into ~30 KB .txt files), ingested by the
real `ingest_paths` (token-exact chunking, FAISS, SQLite docstore, BM25). Only the chunk vectors are
cheap: unit vectors drawn from a seeded RNG per chunk text, under the real all-MiniLM-L6-v2 identity,
so the index opens with the real query embedder and every query pays for a real MiniLM embedding,
a real exact FAISS scan over 100k x 384 vectors, a real BM25 search, the docstore fetch, fusion,
filtering and de-duplication. Dense *relevance* is meaningless; its *cost* is not.

    .venv/bin/python bench/rag/retrieval_latency.py --chunks 100000 --workdir /tmp/rag-bench-100k
    (a second run reuses the index in --workdir)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gdn2_ingest import IngestConfig, ingest_paths  # noqa: E402
from gdn2_ingest.embed import SentenceTransformerEmbedder  # noqa: E402
from gdn2_rag import RAG, RAGConfig  # noqa: E402
from gdn2_rag.retrieve import limited_threads  # noqa: E402

CHARS_PER_CHUNK = 520  # chars of this text per chunk at ingest defaults is ~500: aim a little over the target
FILE_CHARS = 30_000


class CheapVectorEmbedder:
    """The real MiniLM's identity and tokenizer (so chunking is exact), with seeded random vectors."""

    def __init__(self) -> None:
        self.real = SentenceTransformerEmbedder(None, device="cpu")
        self.dim = self.real.dim
        self.max_tokens = self.real.max_tokens

    def identity(self) -> dict:
        return self.real.identity()

    def load_tokenizer(self):
        return self.real.load_tokenizer()

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def source_lines() -> list[str]:
    lines: list[str] = []
    for p in sorted(Path("/usr/share/common-licenses").glob("*")):
        if p.is_file():
            lines += p.read_text(errors="replace").splitlines()
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        lines += p.read_text(errors="replace").splitlines()
    return [ln for ln in lines if len(ln.split()) >= 3]


def build_corpus(root: Path, chunks: int, seed: int = 0) -> int:
    root.mkdir(parents=True, exist_ok=True)
    lines = source_lines()
    rng = random.Random(seed)
    total, n = chunks * CHARS_PER_CHUNK, 0
    written = 0
    while written < total:
        buf, size = [], 0
        while size < FILE_CHARS:
            line = lines[rng.randrange(len(lines))]
            buf.append(line)
            size += len(line) + 1
            # blank lines make paragraphs, as real documents have
            if rng.random() < 0.15:
                buf.append("")
        (root / f"doc{n:05d}.txt").write_text("\n".join(buf) + "\n")
        written += size
        n += 1
    return n


def queries(n: int, seed: int = 1) -> list[str]:
    lines = source_lines()
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        words = lines[rng.randrange(len(lines))].split()
        if len(words) >= 5:
            i = rng.randrange(len(words) - 4)
            out.append(" ".join(words[i : i + rng.randint(3, 6)]))
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/rag-bench-100k")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    ap.add_argument(
        "--retrieval-threads",
        type=int,
        default=1,
        help="RAGConfig.retrieval_threads (torch/FAISS threads per query); 0 leaves the process defaults",
    )
    args = ap.parse_args()
    threads = args.retrieval_threads or None
    work = Path(args.workdir)
    index_dir = work / "index"
    if not (index_dir / "CURRENT").exists():
        t0 = time.perf_counter()
        files = build_corpus(work / "corpus", args.chunks)
        print(f"corpus: {files} files in {time.perf_counter() - t0:.1f} s", flush=True)
        cfg = IngestConfig(domain="support", embedder_factory=CheapVectorEmbedder, batch_size=1024)
        report = ingest_paths(index_dir, [work / "corpus"], cfg, progress=False)
        print(f"ingest: {report.summary()}", flush=True)
    rag = RAG.open(index_dir, config=RAGConfig(device="cpu", use_reader=False, retrieval_threads=threads))
    stats = rag.info()
    qs = queries(args.queries)
    # warm: loads the query embedder and touches every index file once
    for q in qs[:5]:
        rag.search(q, k=10)
    index = rag.index
    rows: dict[str, list[float]] = {"embed query": [], "dense (FAISS)": [], "bm25": [], "search k=10": []}
    rows["retrieve for ask (k=781)"] = []
    for q in qs:
        with limited_threads(threads):
            t = time.perf_counter()
            vec = index.embed_query(q)
            rows["embed query"].append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search_vector(vec, 200)
            rows["dense (FAISS)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search_bm25(q, 200)
        rows["bm25"].append(time.perf_counter() - t)
        t = time.perf_counter()
        rag.search(q, k=10)
        rows["search k=10"].append(time.perf_counter() - t)
        t = time.perf_counter()
        # what `ask` retrieves to fill a 100k-token budget: candidates = 100_000 / 128
        rag._retrieve(q, 781, rag_filter(), candidates=781)
        rows["retrieve for ask (k=781)"].append(time.perf_counter() - t)
    result = {
        "chunks": stats.chunks,
        "documents": stats.documents,
        "dense_kind": stats.dense_kind,
        "queries": len(qs),
        "stages_ms": {
            k: {"p50": pct(v, 50), "p95": pct(v, 95), "mean": statistics.mean(v) * 1000}
            for k, v in rows.items()
        },
    }
    import os

    result["retrieval_threads"] = threads or "process default"
    result["load_average_1m"] = os.getloadavg()[0]
    print(
        f"\nretrieval latency, CPU ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}), threads "
        f"{result['retrieval_threads']}, {stats.chunks} chunks ({stats.dense_kind}), {len(qs)} queries"
    )
    print(f"{'stage':<28}{'p50 ms':>10}{'p95 ms':>10}")
    for name, v in result["stages_ms"].items():
        print(f"{name:<28}{v['p50']:>10.2f}{v['p95']:>10.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


def rag_filter():
    from gdn2_rag.filters import MetadataFilter

    return MetadataFilter()


if __name__ == "__main__":
    main()
