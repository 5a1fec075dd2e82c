"""How often the trained reader sends the scores kernel down its exact path, and what that path costs.

    PYTHONPATH=$PWD python bench/serve/exact_path_probe.py --contexts 10

The forward's scores kernel (`gdn2_kernels/gdn2/chunk_intra.py`) anchors each 16-token sub-chunk at its
first row; a sub-chunk in which some channel decays by more than SPAN (80 nats) takes exact pairwise
decays on its diagonal block instead, a path written for strong decays that are rare at initialisation.
This probe counts, per layer, the (16-token window, head) blocks over SPAN on real contexts (windows of
the packed token axis: the kernel's sub-chunks up to their alignment), and times the
network with the shipped SPAN and with the exact path never taken (SPAN patched to 1e9 in this process
only: its outputs are then wrong, overflowing exponents, and only its time is kept). The difference bounds
what a faster exact path could gain.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reader_batch import contexts  # noqa: E402

from gdn2_kernels.gdn2 import chunk_fwd  # noqa: E402
from gdn2_model.reader import Reader  # noqa: E402


def over_span(reader: Reader, inputs: list) -> list[float]:
    """Per layer: the share of (16-token sub-chunk, head) blocks in which some channel decays > SPAN."""
    shares: list[list[float]] = [[] for _ in reader.net.model.layers]
    originals = []
    for i, layer in enumerate(reader.net.model.layers):
        original = layer.attn._decay
        originals.append(original)

        def decay(f, original=original, i=i):
            g = original(f)  # [B, T, H, K]
            T = g.shape[1] // 16 * 16
            spans = (-g[0, :T]).reshape(T // 16, 16, *g.shape[2:]).sum(1).amax(-1)  # [sub-chunks, H]
            shares[i].append(float((spans >= chunk_fwd.SPAN).float().mean()))
            return g

        layer.attn._decay = decay
    try:
        reader._read(inputs, packed=True)
    finally:
        for layer, original in zip(reader.net.model.layers, originals, strict=True):
            layer.attn._decay = original
    return [sum(s) / len(s) for s in shares]


def timed(fn, device: str, repeats: int = 3) -> float:
    """Best of `repeats` after one untimed call."""

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    reader = Reader.load(None, device=args.device)
    inputs = [reader.prepare(q, p) for q, p in contexts(reader, args.contexts, args.tokens)]
    shares = over_span(reader, inputs)
    print("blocks over SPAN per layer: " + ", ".join(f"{s:.2f}" for s in shares))
    rows = []
    for n in (1, len(inputs)):
        shipped = timed(lambda n=n: reader._read(inputs[:n], packed=True), args.device) / n
        span = chunk_fwd.SPAN
        chunk_fwd.SPAN = 1e9
        try:
            off = timed(lambda n=n: reader._read(inputs[:n], packed=True), args.device) / n
        finally:
            chunk_fwd.SPAN = span
        rows.append((n, shipped, off))
    print("\n| contexts in the pass | ms per context | exact path never taken (timing only) |\n|---|---|---|")
    for n, shipped, off in rows:
        print(f"| {n} | {1e3 * shipped:.1f} | {1e3 * off:.1f} |")


if __name__ == "__main__":
    main()
