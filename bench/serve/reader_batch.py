"""The server's reader path: 32 concurrent 100k-token reads micro-batched vs one at a time (issue 19's bar).

    PYTHONPATH=$PWD python bench/serve/reader_batch.py --contexts 32 --tokens 100000 --out reader_batch.json

Contexts are real text (the Python standard library's source, cut into ~1k-token pieces, a different
stretch per context) read by the shipped reader. Before anything is timed, each context's pieces are counted
with the reader's layout, as context assembly does in `RAG.ask` (that fills the reader's token cache; the
time is reported). Then:

1. the network alone: one context streamed (`Reader._read`, as `extract_spans` reads), one context in one
   pass, and N contexts in one packed varlen pass, in ms per context; picking spans on the device;
2. the serving path, which is what the server runs per ask, with answers checked equal:
   - `ReaderRuntime._extract` (what `RAG.ask` calls outside the server), one ask at a time;
   - `BatchedReaderRuntime._extract` with the micro-batcher running, one client at a time;
   - the same with N client threads at once (as the server's pool calls it), for each --max-pass-tokens.
   Throughput (contexts/s), latency per ask (p50/p99) and peak GPU memory are reported.

Every timed run follows an untimed one (kernels compiled, allocator warm). With --profile DIR, the CUDA
kernels of one packed pass and of one streamed context are profiled (torch.profiler) into DIR. Prints a
markdown table last and writes the numbers as JSON to --out.
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
from gdn2_model.spans import PackedSpanInputs, pick_spans_packed  # noqa: E402
from gdn2_rag.batching import BatchSettings  # noqa: E402
from gdn2_rag.reading import ReaderRuntime  # noqa: E402
from gdn2_rag.serve.reader import BatchedReaderRuntime  # noqa: E402

PIECE_CHARS = 4000
# the untimed round before a timed one reads this many contexts (compiles kernels, warms the allocator)
WARM = 4
# spans per ask with retrieval ranks (gdn2_rag.reading.FUSION_CANDIDATES), and the server's answer length
K, MAX_ANSWER = 30, 32


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
    layout = reader.layout()
    # what assembly does: each piece priced with the reader's layout (this tokenises it, once)
    texts, headers = layout.count_many([p.text for p in pool]), layout.count_many([p.header for p in pool])
    cost = [layout.piece_markers + a + b for a, b in zip(texts, headers, strict=True)]
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


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0


def key(span) -> tuple:
    return (span.piece_index, span.char_start, span.char_end)


def network(reader: Reader, inputs: list, device: str, sizes: list[int]) -> dict:
    """Seconds per context of the network alone, streamed one by one and packed N at a time."""
    res: dict = {}

    def timed(fn) -> float:
        fn()  # untimed: compiles this shape's kernels
        sync(device)
        peak_reset(device)
        t = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - t

    res["streamed_1"] = {"s_per_ctx": timed(lambda: reader._read(inputs[:1], packed=False)), "n": 1}
    for n in sizes:
        total = timed(lambda n=n: reader._read(inputs[:n], packed=True))
        res[f"packed_{n}"] = {"s_per_ctx": total / n, "n": n, "peak_gib": peak_gib(device)}
    # picking spans where the logits are: one context, and every context of the largest pass at once
    for n in (1, sizes[-1]):
        start, end, cu = reader._read(inputs[:n], packed=True)
        spans = PackedSpanInputs.build(inputs[:n], [K] * n, [MAX_ANSWER] * n, start.device)
        res[f"pick_{n}"] = {
            "s_per_ctx": timed(lambda s=start, e=end, p=spans: pick_spans_packed(s, e, p)) / n
        }
    return res


def profile(reader: Reader, inputs: list, n: int, out_dir: Path) -> None:
    """CUDA kernel times of one packed pass of n contexts and of one streamed context."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fn in (
        (f"packed_{n}", lambda: reader._read(inputs[:n], packed=True)),
        ("streamed_1", lambda: reader._read(inputs[:1], packed=False)),
    ):
        fn()
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
        (out_dir / f"profile_{name}.txt").write_text(table)
        print(f"--- profile {name}\n" + "\n".join(table.splitlines()[:18]), flush=True)


def serve_once(rt, calls: list, threads: int) -> tuple[list, list[float], float]:
    """`calls` through `rt._extract` from `threads` client threads (1: one after another)."""
    got: list = [None] * len(calls)
    lat = [0.0] * len(calls)
    go = threading.Barrier(threads + 1)

    def client(idx: list[int]) -> None:
        go.wait()
        for i in idx:
            t = time.perf_counter()
            got[i] = rt._extract(*calls[i])
            lat[i] = time.perf_counter() - t

    workers = [
        threading.Thread(target=client, args=(list(range(c, len(calls), threads)),)) for c in range(threads)
    ]
    for w in workers:
        w.start()
    go.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return got, lat, time.perf_counter() - t0


def serving(reader: Reader, ctx, device: str, batch: BatchSettings, caps: list[int]) -> dict:
    """The server's read path: ReaderRuntime one at a time, BatchedReaderRuntime one and N clients at once."""
    calls = [(q, p, MAX_ANSWER, list(range(1, len(p) + 1)), 3.0) for q, p in ctx]
    res: dict = {}
    plain = ReaderRuntime(device=device, require=True)
    plain._reader, plain._loaded, plain.device = reader, True, device
    serve_once(plain, calls[:WARM], 1)
    peak_reset(device)
    reference, lat, total = serve_once(plain, calls, 1)
    res["plain_sequential"] = {"total_s": total, "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99),
                               "peak_gib": peak_gib(device)}  # fmt: skip

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    for cap in caps:
        rt = BatchedReaderRuntime(device=device, require=True, batch=batch, max_pass_tokens=cap)
        rt._reader, rt._loaded, rt.device = reader, True, device
        asyncio.run_coroutine_threadsafe(rt.start(), loop).result()
        try:
            rows = [("batched_sequential", 1)] if cap == caps[0] else []
            for name, threads in [*rows, ("batched_concurrent", len(calls))]:
                serve_once(rt, calls if threads > 1 else calls[:WARM], threads)
                before = (rt.batcher.stats.batches, rt.batcher.stats.items)
                peak_reset(device)
                got, lat, total = serve_once(rt, calls, threads)
                res[f"{name}_{cap}"] = {
                    "total_s": total,
                    "p50_s": pct(lat, 0.5),
                    "p99_s": pct(lat, 0.99),
                    "peak_gib": peak_gib(device),
                    "same_spans": sum(key(a) == key(b) for a, b in zip(reference, got, strict=True)),
                    "batches": rt.batcher.stats.batches - before[0],
                    "items": rt.batcher.stats.items - before[1],
                }
        finally:
            asyncio.run_coroutine_threadsafe(rt.stop(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    return res


def report(net: dict, s: dict, n: int, sizes: list[int], caps: list[int]) -> None:
    """The two markdown tables and the throughput ratios."""
    print("\n| network alone | ms per context | speed-up per token | peak GiB |\n|---|---|---|---|")
    one = net["streamed_1"]["s_per_ctx"]
    for k, r in net.items():
        if not k.startswith("pick"):
            ms, gib = 1e3 * r["s_per_ctx"], r.get("peak_gib", 0)
            print(f"| {k} | {ms:.1f} | {one / r['s_per_ctx']:.2f}x | {gib:.1f} |")
    pick_1, pick_n = (1e3 * net[f"pick_{m}"]["s_per_ctx"] for m in (1, sizes[-1]))
    print(f"| spans picked on the device, 1 / {sizes[-1]} contexts | {pick_1:.2f} / {pick_n:.2f} | | |")
    print("\n| serving path | wall s | contexts/s | p50 s | p99 s | peak GiB | notes |")
    print("|---|---|---|---|---|---|---|")
    for k, r in s.items():
        note = f"{r['same_spans']}/{n} same spans, {r['batches']} batches" if "same_spans" in r else ""
        print(f"| {k} | {r['total_s']:.2f} | {n / r['total_s']:.1f} | {r['p50_s']:.3f} | {r['p99_s']:.3f} | "
              f"{r['peak_gib']:.1f} | {note} |")  # fmt: skip
    fastest = min(s["plain_sequential"]["total_s"], s[f"batched_sequential_{caps[0]}"]["total_s"])
    for cap in caps:
        speed = fastest / s[f"batched_concurrent_{cap}"]["total_s"]
        print(f"throughput, {n} at once (passes <= {cap} tokens) vs the faster one at a time: {speed:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-pass-tokens", type=int, nargs="+", default=[1_048_576, 4_194_304])
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--pack-sizes", type=int, nargs="+", default=[1, 4, 10, 32])
    ap.add_argument("--profile", type=Path, default=None, help="folder for kernel profiles (CUDA only)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    t = time.perf_counter()
    reader = Reader.load(None, device=args.device)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    ctx = contexts(reader, args.contexts, args.tokens)
    count_s = time.perf_counter() - t
    t = time.perf_counter()
    inputs = [reader.prepare(q, p) for q, p in ctx]
    layout_s = (time.perf_counter() - t) / len(ctx)
    lengths = [len(ri) for ri in inputs]
    n = len(ctx)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    params = reader.identity["params"] / 1e6
    setup = {
        "device": name, "params_m": params, "lengths": lengths, "load_s": load_s,
        "count_all_pieces_s": count_s, "layout_from_cache_ms": 1e3 * layout_s,
        "cache": {"held_tokens": reader.tokens.held_tokens, "hits": reader.tokens.hits},
    }  # fmt: skip
    print(f"{name}; {params:.1f}M-param reader; {n} contexts of {min(lengths)}-{max(lengths)} tokens; "
          f"pieces counted (tokenised) in {count_s:.1f} s; layout from cached ids {1e3 * layout_s:.1f} ms "
          "per context", flush=True)  # fmt: skip
    sizes = [s for s in args.pack_sizes if s <= n]
    net = network(reader, inputs, args.device, sizes)
    print(json.dumps(net), flush=True)
    if args.profile is not None and args.device == "cuda":
        profile(reader, inputs, min(10, n), args.profile)
    batch = BatchSettings(max_batch=args.max_batch, max_wait_ms=5, max_queue=256)
    s = serving(reader, ctx, args.device, batch, args.max_pass_tokens)
    print(json.dumps(s), flush=True)

    report(net, s, n, sizes, args.max_pass_tokens)
    if args.out:
        Path(args.out).write_text(json.dumps({"setup": setup, "network": net, "serving": s}, indent=1))


if __name__ == "__main__":
    main()
