"""Render bench/ingest/ingest_vs_llamaindex.py's JSON as the markdown tables of bench/results/ingest.md.

.venv/bin/python bench/ingest/ingest_report.py bench/results/ingest.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, nd: int = 1) -> str:
    return f"{x:.{nd}f}" if isinstance(x, int | float) else str(x)


def _same_row(name: str, d: dict, kb: float):
    """The fp32 side's value for a row of the table (same keys as ours)."""
    table = {
        "imports (s)": d["imports"], "load / scan (s)": d.get("scan", 0.0),
        "split / load+chunk (s)": d.get("load+chunk", 0.0), "embed, incl. model load (s)": d["embed"],
        "store: FAISS + docstore (+BM25 ours) (s)": d["store"], "total in process (s)": d["total"],
        "process wall incl. interpreter start (s)": d["process_wall"], "chunks": d["chunks"],
        "CPU seconds to the end of ingest (user+sys)": d.get("cpu_ingest_s", "-"),
        "chunks/s (end to end)": d["chunks"] / d["total"], "corpus kB/s (end to end)": kb / d["total"],
        "mean embedder tokens per chunk": d["tokens"]["mean_tokens"],
        "chunks over the 256-token window (cut silently)": d["tokens"]["over_256"],
        "peak RSS after ingest (MB)": d["peak_rss_ingest_mb"], "index on disk (MB)": d["index_bytes"] / 2**20,
        "recall@1 (dense)": d["quality_dense"]["recall@1"],
        "recall@3 (dense)": d["quality_dense"]["recall@3"],
        "recall@5 (dense)": d["quality_dense"]["recall@5"],
        "recall@5 (ours hybrid dense+BM25, RRF)": d["quality_hybrid"]["recall@5"],
    }  # fmt: skip
    return table.get(name, "-")


def render(r: dict) -> str:
    li, us, re_ = r["llamaindex"], r["ours"], r["ours_reingest"]
    fp = r.get("ours-fp32")
    kb = r["corpus"]["bytes"] / 1024
    rows = [
        ("imports (s)", li["imports"], us["imports"]),
        ("load / scan (s)", li["load"], us.get("scan", 0.0)),
        ("split / load+chunk (s)", li["split"], us.get("load+chunk", 0.0)),
        ("embed, incl. model load (s)", li["embed"], us["embed"]),
        ("store: FAISS + docstore (+BM25 ours) (s)", li["store"], us["store"]),
        ("total in process (s)", li["total"], us["total"]),
        (
            "CPU seconds to the end of ingest (user+sys)",
            li.get("cpu_ingest_s", "-"),
            us.get("cpu_ingest_s", "-"),
        ),
        ("process wall incl. interpreter start (s)", li["process_wall"], us["process_wall"]),
        ("chunks", li["chunks"], us["chunks"]),
        ("chunks/s (end to end)", li["chunks"] / li["total"], us["chunks"] / us["total"]),
        ("corpus kB/s (end to end)", kb / li["total"], kb / us["total"]),
        ("mean embedder tokens per chunk", li["tokens"]["mean_tokens"], us["tokens"]["mean_tokens"]),
        (
            "chunks over the 256-token window (cut silently)",
            li["tokens"]["over_256"],
            us["tokens"]["over_256"],
        ),
        ("peak RSS after ingest (MB)", li["peak_rss_ingest_mb"], us["peak_rss_ingest_mb"]),
        ("index on disk (MB)", li["index_bytes"] / 2**20, us["index_bytes"] / 2**20),
        ("recall@1 (dense)", li["quality_dense"]["recall@1"], us["quality_dense"]["recall@1"]),
        ("recall@3 (dense)", li["quality_dense"]["recall@3"], us["quality_dense"]["recall@3"]),
        ("recall@5 (dense)", li["quality_dense"]["recall@5"], us["quality_dense"]["recall@5"]),
        ("recall@5 (ours hybrid dense+BM25, RRF)", "-", us["quality_hybrid"]["recall@5"]),
    ]
    out = ["| | LlamaIndex | ours (bf16, default) | ours (fp32) |", "|---|---:|---:|---:|"]
    for name, a, b in rows:
        nd = 3 if "recall" in name else (0 if name in ("chunks",) or "over the" in name else 1)
        c = _same_row(name, fp, kb) if fp else "-"
        out.append(f"| {name} | {_f(a, nd)} | {_f(b, nd)} | {_f(c, nd)} |")
    speed = li["total"] / us["total"]
    if "cpu_ingest_s" in li and "cpu_ingest_s" in us:
        line = f"CPU-time ratio (LlamaIndex / ours): {li['cpu_ingest_s'] / us['cpu_ingest_s']:.2f}x"
        if fp and "cpu_ingest_s" in fp:
            line += f"; fp32 side {li['cpu_ingest_s'] / fp['cpu_ingest_s']:.2f}x"
        out += ["", line + "."]
    if fp:
        out += [
            "",
            f"fp32 weights alone (same pipeline): {li['total'] / fp['total']:.2f}x LlamaIndex's speed.",
        ]
    out += [
        "",
        f"End-to-end ingest speed-up (same corpus, in-process totals): **{speed:.2f}x**;"
        f" per chunk: {(us['chunks'] / us['total']) / (li['chunks'] / li['total']):.2f}x.",
        f"No-change re-ingest: {re_['ingest_call']:.3f} s in `ingest_paths`"
        f" ({100 * re_['ingest_call'] / us['ingest_call']:.2f}%"
        f" of the full ingest call), {re_['process_wall']:.2f} s as a fresh process"
        f" ({100 * re_['process_wall'] / us['process_wall']:.1f}% of the full run's process wall).",
        "",
        "Misses at 5 (LlamaIndex): " + "; ".join(li["quality_dense"]["misses@5"]),
        "",
        "Misses at 5 (ours, dense): " + "; ".join(us["quality_dense"]["misses@5"]),
        "",
        "Load average (1/5/15 min) before and after each side: "
        + "; ".join(
            f"{k}: {r[k].get('load_avg_before_after', '?')}"
            for k in ("llamaindex", "ours", "ours-fp32")
            if k in r
        ),
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
