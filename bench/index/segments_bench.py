"""Segments at 100k chunks: a one-file edit end to end, search vs a fresh build, compaction of 10
segments, and the keyword side measured against bm25s and SQLite FTS5 (issue 19, part 1).

    PYTHONPATH=$PWD .venv/bin/python bench/index/segments_bench.py --work /tmp/segbench \\
        --out bench/results/raw/index_segments.json

Steps:
1. write a synthetic corpus (bench/index/fakes.py: ~100k one-paragraph chunks) and ingest it with
   random-but-fixed vectors (the embedder is not what is measured);
2. edit one file, ingest again: end-to-end seconds and its stages (the embedding of that file's
   chunks reported apart);
3. ingest the edited corpus into a fresh index; for each query compare the top-10 (BM25, dense,
   hybrid) of the updated index with the fresh one by chunk content (ids differ between the two) and
   by score; time search p50 on both;
4. make 10 segments with more one-file edits, record the top-10 of every query, `compact`, compare;
5. keyword side: build and query time of our postings, of bm25s and of SQLite FTS5 over the same texts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

from fakes import RandomEmbedder, paragraph, queries, write_corpus  # noqa: E402

from gdn2_ingest import Index, IngestConfig, ingest_paths  # noqa: E402
from gdn2_ingest.segments_write import compact_index  # noqa: E402


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def _edit(path: Path, rng: np.random.Generator) -> None:
    """Replace one paragraph of a file and append one."""
    paras = path.read_text().split("\n\n")
    paras[3] = paragraph(rng)
    path.write_text("\n\n".join([*paras, paragraph(rng)]) + "\n")


def _keys(ix: Index, hits: list[tuple[int, float]]) -> list[tuple[str, str]]:
    by_id = {c.id: c for c in ix.get_chunks([i for i, _ in hits])}
    return [(by_id[i].path, by_id[i].text) for i, _ in hits]


def _search_all(ixs: list[Index], qs: list[str], emb: RandomEmbedder, k: int = 10):
    """Per index, per query: (bm25 hits, dense hits, hybrid chunk ids), and per index the p50 of each
    kind. The indexes answer each query in turn, so a busy machine slows them alike."""
    from gdn2_rag.config import RAGConfig
    from gdn2_rag.retrieve import HybridRetriever
    from gdn2_rag.threads import limited_threads

    qvecs = {q: emb.embed([q])[0] for q in qs}
    retrievers = []
    for ix in ixs:
        ix.embed_query = lambda q: qvecs[q]  # vectors made once: search time is the index's
        retrievers.append(HybridRetriever(ix, RAGConfig()))
    out = [[] for _ in ixs]
    times = [{"bm25": [], "dense": [], "hybrid": []} for _ in ixs]
    for q in qs:
        for n, (ix, retriever) in enumerate(zip(ixs, retrievers, strict=True)):
            t0 = time.perf_counter()
            b = ix.search_bm25(q, k)
            t1 = time.perf_counter()
            # as HybridRetriever searches: FAISS on one thread (RAGConfig.retrieval_threads)
            with limited_threads(1):
                d = ix.search_vector(qvecs[q], k)
            t2 = time.perf_counter()
            h = [p.chunk_id for p in retriever.retrieve(q, k).passages]
            t3 = time.perf_counter()
            out[n].append((b, d, h))
            for key, dt in (("bm25", t1 - t0), ("dense", t2 - t1), ("hybrid", t3 - t2)):
                times[n][key].append(dt)
    p50 = [{f"{key}_p50_ms": _p50(v) for key, v in t.items()} for t in times]
    return out, p50


def _compare(ix_a: Index, res_a, ix_b: Index, res_b) -> dict:
    """Top-10 identical by chunk content, scores equal (max abs difference)."""
    same = {"bm25": 0, "dense": 0, "hybrid": 0}
    diff = {"bm25": 0.0, "dense": 0.0}
    for (ba, da, ha), (bb, db, hb) in zip(res_a, res_b, strict=True):
        same["bm25"] += _keys(ix_a, ba) == _keys(ix_b, bb)
        same["dense"] += _keys(ix_a, da) == _keys(ix_b, db)
        same["hybrid"] += _keys(ix_a, [(i, 0) for i in ha]) == _keys(ix_b, [(i, 0) for i in hb])
        for name, x, y in (("bm25", ba, bb), ("dense", da, db)):
            if len(x) == len(y) and x:
                diff[name] = max(diff[name], max(abs(s - t) for (_, s), (_, t) in zip(x, y, strict=True)))
    return {"queries": len(res_a), "identical_top10": same, "max_score_diff": diff}


def _keyword_side(ix: Index, qs: list[str]) -> dict:
    """Build + query p50 of our postings, bm25s, and FTS5 over the live chunks' texts."""
    import bm25s

    from gdn2_ingest.sparse import STOPWORDS, KeywordSegment, Postings, _tok, search_segments

    rows = []
    for s in ix.segments:
        rows += list(s.docstore.iter_texts())
    out = {"chunks": len(rows)}
    t0 = time.perf_counter()
    post = Postings.build(rows)
    out["postings_build_s"] = time.perf_counter() - t0
    seg = [KeywordSegment(post)]
    ts = []
    for q in qs:
        t = time.perf_counter()
        search_segments(seg, q, 10)
        ts.append(time.perf_counter() - t)
    out["postings_query_p50_ms"] = _p50(ts)
    corpus = [f"{t}\n{s}\n{x}" for _, _, t, s, x in rows]
    t0 = time.perf_counter()
    r = bm25s.BM25()
    r.index(bm25s.tokenize(corpus, stopwords=STOPWORDS, show_progress=False), show_progress=False)
    out["bm25s_build_s"] = time.perf_counter() - t0
    ts = []
    for q in qs:
        toks = [w for w in _tok([q])[0] if w in r.vocab_dict]
        t = time.perf_counter()
        if toks:
            r.retrieve([toks], k=10, show_progress=False, n_threads=1)
        ts.append(time.perf_counter() - t)
    out["bm25s_query_p50_ms"] = _p50(ts)
    db = sqlite3.connect(":memory:")
    t0 = time.perf_counter()
    db.execute("CREATE VIRTUAL TABLE f USING fts5(body)")
    db.executemany(
        "INSERT INTO f(rowid, body) VALUES (?, ?)", [(i, c) for (i, *_), c in zip(rows, corpus, strict=True)]
    )
    db.commit()
    out["fts5_build_s"] = time.perf_counter() - t0
    ts = []
    for q in qs:
        match = " OR ".join(f'"{w}"' for w in q.split())
        t = time.perf_counter()
        db.execute(
            "SELECT rowid, bm25(f) FROM f WHERE f MATCH ? ORDER BY bm25(f) LIMIT 10", (match,)
        ).fetchall()
        ts.append(time.perf_counter() - t)
    out["fts5_query_p50_ms"] = _p50(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/segbench"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--files", type=int, default=2060)
    ap.add_argument("--paragraphs", type=int, default=50)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    docs = args.work / "docs"
    files = write_corpus(docs, args.files, args.paragraphs)
    emb = RandomEmbedder()
    cfg = IngestConfig(embedder_factory=lambda: emb, lock_timeout=5)
    res: dict = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}

    # 1. the base index
    rep = ingest_paths(args.work / "ix", [docs], cfg, progress=False)
    res["base"] = {"chunks": rep.chunks_total, "seconds": rep.seconds, "stages": rep.stage_seconds}
    print("base", res["base"], flush=True)

    # 2. a one-file edit
    rng = np.random.default_rng(7)
    _edit(files[len(files) // 2], rng)
    emb.texts = 0
    rep = ingest_paths(args.work / "ix", [docs], cfg, progress=False)
    res["edit"] = {
        "seconds": rep.seconds,
        "stages": rep.stage_seconds,
        "chunks_embedded": rep.chunks_embedded,
        "chunks_added": rep.chunks_added,
        "chunks_removed": rep.chunks_removed,
        "seconds_without_embedding": rep.seconds - rep.stage_seconds.get("embed", 0.0),
    }
    print("edit", res["edit"], flush=True)

    # 3. against a fresh build of the same files
    fresh_rep = ingest_paths(args.work / "fresh", [docs], cfg, progress=False)
    res["fresh_build_seconds"] = fresh_rep.seconds
    qs = queries(args.queries)
    with Index.open(args.work / "ix", embedder=emb) as a, Index.open(args.work / "fresh", embedder=emb) as b:
        _search_all([a, b], qs[:20], emb)  # warm both (page cache, lazy imports)
        (ra, rb), (ta, tb) = _search_all([a, b], qs, emb)
        res["search"] = {"updated": {"segments": len(a.segments), **ta},
                         "fresh": {"segments": len(b.segments), **tb},
                         "vs_fresh": _compare(a, ra, b, rb)}  # fmt: skip
        res["keyword_side"] = _keyword_side(b, qs)
    print("search", res["search"], flush=True)
    print("keyword", res["keyword_side"], flush=True)

    # 4. ten segments, then compaction
    t_edits = []
    for f in files[1:9]:
        _edit(f, rng)
        t_edits.append(ingest_paths(args.work / "ix", [docs], cfg, progress=False).seconds)
    a = Index.open(args.work / "ix", embedder=emb)
    n_before = len(a.segments)
    # the reader keeps the 10-segment generation on disk while compaction publishes the merged one
    rep = compact_index(args.work / "ix")
    with Index.open(args.work / "ix", embedder=emb) as c:
        _search_all([a, c], qs[:20], emb)
        (before, after), (t_before, t_after) = _search_all([a, c], qs, emb)
        n_after = len(c.segments)
    a.close()
    ids_before = before
    res["compaction"] = {
        "segments_before": n_before, "segments_after": n_after, "seconds": rep.seconds,
        "edit_seconds": t_edits,
        "identical_ids_and_scores": sum(x == y for x, y in zip(ids_before, after, strict=True)),
        "queries": len(qs), "search_before": t_before, "search_after": t_after,
    }  # fmt: skip
    print("compaction", res["compaction"], flush=True)
    res["load_after"] = os.getloadavg()[0]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
