"""Micro-batched reader vs one read at a time, on N concurrent contexts of ~100k reader tokens.

    PYTHONPATH=$PWD python bench/serve/reader_batch.py --contexts 32 --tokens 100000 --device cuda

Contexts are real text (the Python standard library's source, cut into ~1k-token pieces, a different
stretch per context) read by the shipped reader. Two comparisons, each checked for equal answers:

1. the reader alone: `Reader.extract_spans` 32 times in a row vs one `Reader.extract_spans_batch` call
   (packed varlen passes of at most --max-pass-tokens);
2. the serving path: `ReaderRuntime._extract` (what `RAG.ask` calls) 32 times in a row, vs 32 client
   threads calling `BatchedReaderRuntime._extract` at once with the micro-batcher running, as the
   server's pool does (each thread tokenises and picks its spans itself; the batcher packs the passes).
   Latency per request (p50/p99) and throughput (contexts/s) are reported for both.

Every timed run follows an untimed one over the first few inputs (kernels compiled, allocator warm). Prints a
markdown table and writes the numbers as JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gdn2_model.prompt import ContextPiece  # noqa: E402
from gdn2_model.reader import Reader  # noqa: E402
from gdn2_rag.batching import BatchSettings  # noqa: E402
from gdn2_rag.reading import ReaderRuntime  # noqa: E402
from gdn2_rag.serve.reader import BatchedReaderRuntime  # noqa: E402

PIECE_CHARS = 4000
# the untimed round before each timed one reads this many contexts (compiles kernels, warms the allocator)
WARM = 4


def corpus_pieces() -> list[ContextPiece]:
    """~1k-token pieces of the standard library's modules, in a fixed order."""
    root = Path(os.__file__).parent
    pieces = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for i in range(0, len(text), PIECE_CHARS):
            pieces.append(
                ContextPiece(text=text[i : i + PIECE_CHARS], header=f"{path.name}:{i}", path=str(path))
            )
    return pieces


def contexts(reader: Reader, n: int, tokens: int) -> list[tuple[str, list[ContextPiece]]]:
    """n (question, pieces) of at most `tokens` reader tokens each, from different stretches of the corpus."""
    pool = corpus_pieces()
    # each piece's tokens counted once (text + its header and markers, as the layout adds them)
    encodings = reader.tokenizer.encode_batch(
        [f"{p.header}\n{p.text}" for p in pool], add_special_tokens=False
    )
    cost = [len(e.ids) + 3 for e in encodings]
    out = []
    for i in range(n):
        start = i * len(pool) // n
        pieces, used = [], 64
        for j in range(start, start + len(pool)):
            if used + cost[j % len(pool)] > tokens:
                break
            pieces.append(pool[j % len(pool)])
            used += cost[j % len(pool)]
        out.append((f"What does {pieces[len(pieces) // 2].header.split(':')[0]} return on error?", pieces))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def spans_key(spans) -> list:
    return [(s.piece_index, s.char_start, s.char_end) for s in spans]


def direct(reader: Reader, ctx, device: str, caps: list[int]) -> dict:
    """The reader alone: one by one vs extract_spans_batch under each pass cap."""
    res: dict = {}
    for rounds in (ctx[:WARM], ctx):
        sync(device)
        t0 = time.perf_counter()
        lat, seq = [], []
        for q, p in rounds:
            t = time.perf_counter()
            seq.append(reader.extract_spans(q, p, k=1))
            sync(device)
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    res["sequential"] = {"total_s": total, "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99)}
    for cap in caps:
        for rounds in (ctx[:WARM], ctx):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            batched = reader.extract_spans_batch(rounds, k=1, max_pass_tokens=cap)
            sync(device)
            total = time.perf_counter() - t0
        same = sum(spans_key(a) == spans_key(b) for a, b in zip(seq, batched, strict=True))
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
        res[f"batch_cap_{cap}"] = {"total_s": total, "same_spans": same, "peak_gib": peak}
    return res


def serving(reader: Reader, ctx, device: str, batch: BatchSettings, cap: int) -> dict:
    """The server's read path: ReaderRuntime one at a time vs BatchedReaderRuntime under N client threads."""
    ranks = [list(range(1, len(p) + 1)) for _, p in ctx]
    plain = ReaderRuntime(device=device, require=True)
    plain._reader, plain._loaded, plain.device = reader, True, device
    res: dict = {}
    for rounds in (WARM, len(ctx)):
        lat, seq = [], []
        t0 = time.perf_counter()
        for (q, p), r in zip(ctx[:rounds], ranks, strict=False):
            t = time.perf_counter()
            seq.append(plain._extract(q, p, 32, r, 3.0))
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    res["sequential"] = {"total_s": total, "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99)}

    rt = BatchedReaderRuntime(device=device, require=True, batch=batch, max_pass_tokens=cap)
    rt._reader, rt._loaded, rt.device = reader, True, device
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    asyncio.run_coroutine_threadsafe(rt.start(), loop).result()
    try:
        for _warm_then_timed in range(2):
            lat = [0.0] * len(ctx)
            got = [None] * len(ctx)
            go = threading.Barrier(len(ctx) + 1)

            def client(i: int, lat=lat, got=got, go=go) -> None:
                q, p = ctx[i]
                go.wait()
                t = time.perf_counter()
                got[i] = rt._extract(q, p, 32, ranks[i], 3.0)
                lat[i] = time.perf_counter() - t

            threads = [threading.Thread(target=client, args=(i,)) for i in range(len(ctx))]
            for t in threads:
                t.start()
            go.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join()
            total = time.perf_counter() - t0
        stats = rt.batcher.stats
    finally:
        asyncio.run_coroutine_threadsafe(rt.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
    same = sum((a.piece_index, a.char_start, a.char_end) == (b.piece_index, b.char_start, b.char_end)
               for a, b in zip(seq, got, strict=True))  # fmt: skip
    res["batched"] = {
        "total_s": total,
        "p50_s": pct(lat, 0.5),
        "p99_s": pct(lat, 0.99),
        "same_spans": same,
        "batches": stats.batches,
        "items": stats.items,
        "largest": stats.largest,
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-pass-tokens", type=int, nargs="+", default=[1_048_576, 4_194_304])
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    t = time.perf_counter()
    reader = Reader.load(None, device=args.device)
    ctx = contexts(reader, args.contexts, args.tokens)
    lengths = [len(reader.prepare(q, p)) for q, p in ctx]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    setup = time.perf_counter() - t
    params = reader.identity["params"] / 1e6
    span = f"{min(lengths)}-{max(lengths)}"
    print(f"{name}; {params:.1f}M-param reader; {len(ctx)} contexts of {span} tokens; {setup:.0f} s setup")
    d = direct(reader, ctx, args.device, args.max_pass_tokens)
    print(json.dumps(d), flush=True)
    batch = BatchSettings(max_batch=args.max_batch, max_wait_ms=5, max_queue=256)
    s = serving(reader, ctx, args.device, batch, args.max_pass_tokens[0])
    print(json.dumps(s), flush=True)
    n = len(ctx)
    rows = [("reader alone, one by one", d["sequential"]["total_s"], d["sequential"], "")]
    for cap in args.max_pass_tokens:
        r = d[f"batch_cap_{cap}"]
        rows.append((f"reader alone, extract_spans_batch (passes <= {cap} tokens)", r["total_s"], None,
                     f"{r['same_spans']}/{n} same spans, peak {r['peak_gib']:.1f} GiB"))  # fmt: skip
    rows.append(("serving path, one at a time", s["sequential"]["total_s"], s["sequential"], ""))
    b = s["batched"]
    note = f"{b['same_spans']}/{n} same spans, {b['batches']} batches (largest {b['largest']})"
    rows.append((f"serving path, {n} concurrent clients, micro-batched", b["total_s"], b, note))
    print("\n| path | wall s | contexts/s | p50 s | p99 s | notes |\n|---|---|---|---|---|---|")
    for name, total, lat, note in rows:
        p50 = f"{lat['p50_s']:.3f}" if lat else "-"
        p99 = f"{lat['p99_s']:.3f}" if lat else "-"
        print(f"| {name} | {total:.2f} | {n / total:.1f} | {p50} | {p99} | {note} |")
    speed = s["sequential"]["total_s"] / b["total_s"]
    print(f"\nserving-path throughput, micro-batched vs sequential: {speed:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"direct": d, "serving": s, "lengths": lengths}, indent=1))


if __name__ == "__main__":
    main()
