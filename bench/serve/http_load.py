"""Load a running `rag serve` with C concurrent clients; report requests/s and latency percentiles.

    rag serve --index IDX --no-reader --port 8765 &
    python bench/serve/http_load.py --url http://127.0.0.1:8765 --path /search --clients 16 --requests 2000

Each client (one httpx.AsyncClient with a keep-alive connection) sends requests back to back until all
are sent; queries are distinct word pairs (no cache can answer them). A warm-up phase of `--warmup`
requests runs first and is not counted. Prints one markdown row and, with --json, the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter

import httpx

WORDS = (  # noqa: SIM905 - a paragraph of words reads better than a list
    "license warranty copyright patent notice source software distribute modify terms liability "
    "permission condition contributor trademark object code derivative work agreement termination "
    "redistribution binary documentation merchantability fitness purpose damages indemnity law "
    "jurisdiction version library program user interface compatible exception linking"
).split()


def queries(n: int) -> list[str]:
    pairs = itertools.cycle(itertools.permutations(WORDS, 2))
    return [f"{a} {b}" for _, (a, b) in zip(range(n), pairs, strict=False)]


def body(path: str, q: str) -> dict:
    return {"query": q, "k": 10} if path == "/search" else {"question": f"What does the {q} clause say?"}


async def run(url: str, path: str, clients: int, n: int, warmup: int, key: str | None) -> dict:
    qs = queries(n + warmup)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    codes: Counter = Counter()

    async def phase(batch: list[str], counted: bool) -> None:
        todo = iter(batch)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as ac:
                for q in todo:
                    t = time.perf_counter()
                    r = await ac.post(path, json=body(path, q))
                    if counted:
                        latencies.append(time.perf_counter() - t)
                        codes[r.status_code] += 1

        await asyncio.gather(*(client() for _ in range(clients)))

    await phase(qs[:warmup], counted=False)
    t0 = time.perf_counter()
    await phase(qs[warmup:], counted=True)
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(q * (len(latencies) - 1))))]

    return {
        "path": path,
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "req_per_s": len(latencies) / wall,
        "p50_ms": pct(0.5) * 1e3,
        "p99_ms": pct(0.99) * 1e3,
        "status": dict(codes),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--path", default="/search", choices=["/search", "/ask"])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(run(args.url, args.path, args.clients, args.requests, args.warmup, args.api_key))
    if args.json:
        print(json.dumps(res))
    print(
        f"| {res['path']} | {res['clients']} | {res['requests']} | {res['req_per_s']:.0f} | "
        f"{res['p50_ms']:.1f} | {res['p99_ms']:.1f} | {res['status']} |"
    )


if __name__ == "__main__":
    main()
