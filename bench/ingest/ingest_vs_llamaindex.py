"""Ingest benchmark: our gdn2_ingest/ vs LlamaIndex on the same corpus, same embedder, same machine.

Corpus (chosen deterministically, copied into WORK/corpus so both sides read identical bytes):
all regular files of /usr/share/common-licenses; 150 man pages from /usr/share/man/man1 (not gcloud_*,
not .so aliases, 3-15 kB of roff, evenly spaced in name order, stored decompressed as roff since
LlamaIndex cannot read .gz); 150 standard-library modules (3-15 kB, no tests/encodings, evenly spaced).

LlamaIndex side: SimpleDirectoryReader -> SentenceSplitter(chunk_size=256, chunk_overlap=32) ->
HuggingFaceEmbedding (the same all-MiniLM-L6-v2 folder) -> FaissVectorStore(IndexFlatIP) -> persist.
Ours: ingest_paths(domain=auto) with the defaults (bf16 embedder weights on this CPU, which has
AVX512-BF16), and again with float32 weights (side "ours-fp32") to show what bf16 contributes.
Each side runs in its own fresh process (imports
counted), then a no-change re-ingest of ours, then recall@k on bench/ingest/ingest_questions.py.

    .venv/bin/python bench/ingest/ingest_vs_llamaindex.py --work /tmp/ingest-bench \
        --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
K = 5


def build_corpus(dst: Path, n: int = 150) -> dict:
    """Copy the deterministic selection (n man pages, n modules) into dst; returns counts and bytes."""
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "licenses").mkdir(parents=True)
    (dst / "man" / "man1").mkdir(parents=True)
    for p in sorted(Path("/usr/share/common-licenses").iterdir()):
        if p.is_file() and not p.is_symlink():
            shutil.copyfile(p, dst / "licenses" / p.name)
    ok = []
    for p in sorted(Path("/usr/share/man/man1").glob("*.gz")):
        if p.is_symlink() or p.name.startswith("gcloud"):
            continue
        raw = gzip.decompress(p.read_bytes())
        if raw.lstrip().startswith(b".so") or not 3000 <= len(raw) <= 15000:
            continue
        ok.append((p, raw))
    for i in range(n):
        p, raw = ok[int(i * len(ok) / n)]
        (dst / "man" / "man1" / p.name.removesuffix(".gz")).write_bytes(raw)
    lib = Path(os.__file__).parent
    skip = {
        "test",
        "tests",
        "idlelib",
        "site-packages",
        "dist-packages",
        "lib2to3",
        "__pycache__",
        "encodings",
    }
    mods = sorted(
        p
        for p in lib.rglob("*.py")
        if not skip & set(p.relative_to(lib).parts) and 3000 <= p.stat().st_size <= 15000
    )
    for i in range(n):
        p = mods[int(i * len(mods) / n)]
        out = dst / "stdlib" / p.relative_to(lib)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, out)
    files = [f for f in dst.rglob("*") if f.is_file()]
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far: less sensitive than wall time to other
    processes sharing the 2 cores (the benchmark machine is shared)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rel(path: str, corpus: Path) -> str:
    return str(Path(path).resolve().relative_to(corpus.resolve()))


def _recall(hits: list[list[str]]) -> dict:
    from ingest_questions import QUESTIONS

    out = {}
    for k in (1, 3, K):
        n = sum(1 for (q, ans), got in zip(QUESTIONS, hits, strict=True) if set(got[:k]) & set(ans))
        out[f"recall@{k}"] = n / len(QUESTIONS)
    out["misses@5"] = [
        q for (q, ans), got in zip(QUESTIONS, hits, strict=True) if not set(got[:K]) & set(ans)
    ]
    return out


def _token_stats(texts: list[str]) -> dict:
    """Embedder tokens per embedded text (special tokens included) and how many exceed the 256 window."""
    from gdn2_ingest.embed import SentenceTransformerEmbedder, TokenCounter

    counts = TokenCounter(SentenceTransformerEmbedder().load_tokenizer()).count(texts)
    over = sum(1 for c in counts if c > 256)
    return {"mean_tokens": sum(counts) / max(1, len(counts)), "max_tokens": max(counts, default=0),
            "over_256": over, "over_256_frac": over / max(1, len(counts))}  # fmt: skip


def child_ours(corpus: Path, index: Path, reingest: bool, dtype: str = "auto") -> dict:
    t0 = time.perf_counter()
    from gdn2_ingest import Index, IngestConfig, ingest_paths

    t_imp = time.perf_counter() - t0
    rep = ingest_paths(index, [corpus], IngestConfig(domain="auto", dtype=dtype), progress=False)
    res = {"imports": t_imp, "ingest_call": rep.seconds, **{k: v for k, v in rep.stage_seconds.items()},
           "chunks": rep.chunks_total, "chunks_embedded": rep.chunks_embedded, "skipped": len(rep.skipped),
           "documents": rep.documents}  # fmt: skip
    res["total"] = time.perf_counter() - t0
    res["peak_rss_ingest_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["cpu_ingest_s"] = _cpu_seconds()
    if reingest:
        return res
    from ingest_hybrid import hybrid

    with Index.open(index, dtype=dtype) as ix:
        res["index_bytes"] = ix.stats().bytes
        res["per_domain"] = ix.stats().per_domain
        from ingest_questions import QUESTIONS

        dense_hits, hybrid_hits = [], []
        for q, _ in QUESTIONS:
            d = ix.search_dense(q, 20)
            b = ix.search_bm25(q, 20)
            dense_hits.append([_rel(c.path, corpus) for c in ix.get_chunks([i for i, _ in d[:K]])])
            hybrid_hits.append([_rel(c.path, corpus) for c in ix.get_chunks(hybrid(d, b)[:K])])
        res["quality_dense"] = _recall(dense_hits)
        res["quality_hybrid"] = _recall(hybrid_hits)
        # exact embedder tokens of what was embedded (title prefix + text), recorded at ingest
        counts = [r[0] for r in ix.docstore.db.execute("SELECT tokens FROM chunks")]
    over = sum(1 for c in counts if c > 256)
    res["tokens"] = {"mean_tokens": sum(counts) / max(1, len(counts)), "max_tokens": max(counts, default=0),
                     "over_256": over, "over_256_frac": over / max(1, len(counts))}  # fmt: skip
    return res


def child_llamaindex(corpus: Path, index: Path, model: str) -> dict:
    t0 = time.perf_counter()
    import faiss
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    res = {"imports": time.perf_counter() - t0}
    t = time.perf_counter()
    docs = SimpleDirectoryReader(str(corpus), recursive=True).load_data(show_progress=False)
    res["load"] = time.perf_counter() - t
    t = time.perf_counter()
    nodes = SentenceSplitter(chunk_size=256, chunk_overlap=32).get_nodes_from_documents(docs)
    res["split"] = time.perf_counter() - t
    t = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=model, device="cpu")
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    vecs = embed.get_text_embedding_batch(texts, show_progress=False)
    for n, v in zip(nodes, vecs, strict=True):
        n.embedding = v
    res["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(len(vecs[0])))
    ctx = StorageContext.from_defaults(vector_store=store)
    vindex = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed)
    ctx.persist(persist_dir=str(index))
    res["store"] = time.perf_counter() - t
    res["chunks"] = len(nodes)
    res["documents"] = len(docs)
    res["total"] = time.perf_counter() - t0
    res["peak_rss_ingest_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["cpu_ingest_s"] = _cpu_seconds()
    res["index_bytes"] = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    from ingest_questions import QUESTIONS

    retriever = vindex.as_retriever(similarity_top_k=K)
    hits = []
    for q, _ in QUESTIONS:
        got = retriever.retrieve(q)
        hits.append([_rel(n.node.metadata.get("file_path", ""), corpus) for n in got])
    res["quality_dense"] = _recall(hits)
    res["tokens"] = _token_stats(texts)
    return res


def run_child(args: list[str]) -> dict:
    """Run one side in a fresh interpreter; returns its JSON result plus wall time and peak RSS."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=f"{ROOT}:{ROOT / 'bench' / 'ingest'}",
    )
    t = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-4000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_wall"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/ingest-bench")
    ap.add_argument("--out", default=str(ROOT / "bench/results/ingest.json"))
    ap.add_argument("--child", choices=["ours", "ours-fp32", "ours-reingest", "llamaindex"])
    ap.add_argument("--sides", default="llamaindex,ours,ours-fp32")
    ap.add_argument("--merge", help="update this earlier results JSON with the sides run now")
    ap.add_argument("--n", type=int, default=150, help="man pages and modules (150; fewer for a smoke run)")
    a = ap.parse_args()
    work = Path(a.work)
    corpus = work / "corpus"
    if a.child:
        if a.child == "llamaindex":
            from gdn2_ingest.embed import default_model_path

            res = child_llamaindex(corpus, work / "li-index", str(default_model_path()))
        elif a.child == "ours-fp32":
            # the same pipeline with float32 embedder weights: separates the bf16 gain from the rest
            res = child_ours(corpus, work / "our-index-fp32", reingest=False, dtype="float32")
        else:
            res = child_ours(corpus, work / "our-index", reingest=a.child == "ours-reingest")
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    work.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "load_before": os.getloadavg()}  # fmt: skip
    results = json.loads(Path(a.merge).read_text()) if a.merge else {}
    results.update({"corpus": build_corpus(corpus, a.n), "machine": machine})
    for side in a.sides.split(","):
        folder = {"llamaindex": "li-index", "ours": "our-index", "ours-fp32": "our-index-fp32"}[side]
        shutil.rmtree(work / folder, ignore_errors=True)
        print(f"running {side} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()
        results[side] = run_child(["--child", side, "--work", str(work)])
        results[side]["load_avg_before_after"] = [load, os.getloadavg()]
        print(json.dumps(results[side])[:600], file=sys.stderr, flush=True)
        if side == "ours":
            results["ours_reingest"] = run_child(["--child", "ours-reingest", "--work", str(work)])
    results["machine"]["load_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
