"""Measure a tuning row for this GPU and one shape: `python -m gdn2_kernels.autotune --shape 1x65536`.

Starts from the table's row for this GPU's architecture and the shape's bucket, then changes one setting
at a time (coordinate descent over SEARCH, or DECODE_SEARCH with --decode, which times the one-token step
in a CUDA graph), keeping a change when the timed call gets faster by more than
`--min-gain` and its output still matches the starting row's. Settings that do not fit the GPU (Triton's
OutOfResources) are skipped. Prints the row as the entry to paste into `tuning.TABLE` and, with --out,
writes it as JSON. GPU only; see tuning.py's docstring for adding the row.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace

import torch

from gdn2_kernels.gdn2.tuning import Tuning, device_arch, lookup, shape_bucket

CHUNK = 64
# the settings tried, each against the current best row; precisions are not searched (they move the error)
SEARCH: dict[str, tuple] = {
    "scores_warps": (1, 2, 4),
    "scores_maxnreg": (None, 128, 168, 200),
    "wy_warps": (2, 4, 8),
    "wy_block_k": (64, 128),  # never under chunk_fwd.WY_MIN_BLOCK
    "wy_loads_first": (False, True),
    "state_warps": (4, 8),
    "state_stages": (1, 2, 3, 4),
    "state_block_v": (16, 32, 64),
    "segments": (1, 4, 6, 8),
    "segment_block_v": (32, 64),
    "segment_last_block_v": (16, 32, 64),
    "segment_stages": (1, 2, 3),
    "segment_ut_prefetch": (False, True),
    "bwd_state_block_v": (16, 32, 64),
    "bwd_state_stages": (1, 2, 3),
    "bwd_wy_warps": (4, 8),
    "bwd_wy_block_k": (32, 64, 128),
    "bwd_scores_warps": (2, 4, 8),
    "bwd_scores_block_k": (32, 64, 128),
}
# tuned by `--decode`: the one-token step from a state
DECODE_SEARCH: dict[str, tuple] = {"decode_block_v": (8, 16, 32, 64), "decode_warps": (1, 2, 4)}
_FORWARD_ONLY = {name for name in SEARCH if not name.startswith("bwd_")}


def _inputs(B: int, T: int, H: int, D: int, grad: bool) -> list[torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rnd(*shape, dtype=torch.bfloat16, uniform=False):
        x = (torch.rand if uniform else torch.randn)(*shape, device="cuda", generator=gen)
        return x.to(dtype)

    q, k, v = rnd(B, T, H, D), rnd(B, T, H, D), rnd(B, T, H, D)
    g = -(0.1 + 4.9 * rnd(B, T, H, D, dtype=torch.float32, uniform=True))
    b, w = rnd(B, T, H, D, uniform=True), rnd(B, T, H, D, uniform=True)
    return [x.requires_grad_(grad) for x in (q, k, v, g, b, w)]


def _timer(xs: list[torch.Tensor], backward: bool):
    """A function timing one call (forward, or forward + backward) with a given row: (ms, output)."""
    import triton
    from triton.runtime.errors import OutOfResources

    from gdn2_kernels.gdn2 import chunk as triton_chunk

    do = torch.randn_like(xs[2]) if backward else None

    def call(row: Tuning) -> torch.Tensor:
        if not backward:
            with torch.no_grad():
                return triton_chunk.chunk_gdn2(*xs, tuning=row)[0]
        for x in xs:
            x.grad = None
        o = triton_chunk.chunk_gdn2(*xs, tuning=row)[0]
        o.backward(do)
        return xs[0].grad

    def measure(row: Tuning) -> tuple[float, torch.Tensor] | None:
        try:
            out = call(row).float().clone()
            ms = triton.testing.do_bench(lambda: call(row), warmup=10, rep=60, return_mode="median")
        except OutOfResources:
            return None
        return ms, out

    return measure


def _decode_timer(B: int, H: int, D: int):
    """A function timing one decode step (a CUDA graph replay, as serving runs it) with a given row."""
    import triton
    from triton.runtime.errors import OutOfResources

    from gdn2_kernels.gdn2 import chunk as triton_chunk

    xs = [x.contiguous() for x in _inputs(B, 1, H, D, grad=False)]
    state0 = torch.randn(B, H, D, D, device="cuda") * 0.1

    def measure(row: Tuning) -> tuple[float, torch.Tensor] | None:
        state = state0.clone()
        try:
            out = triton_chunk.gdn2_step(*xs, state.clone(), tuning=row)[0].float()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                triton_chunk.gdn2_step(*xs, state, tuning=row)
        except OutOfResources:
            return None
        return triton.testing.do_bench(graph.replay, warmup=25, rep=200, return_mode="median") * 1e3, out

    return measure


def autotune(
    B: int, T: int, H: int, D: int, mode: str = "fwd", min_gain: float = 0.02, log=print
) -> tuple[Tuning, str]:
    """The best row found for this shape on the current GPU, and its (arch, bucket) key as text. `mode`:
    "fwd" (forward settings), "fwdbwd" (forward + backward settings), "decode" (the step, in µs)."""
    arch = device_arch(torch.device("cuda"))
    bucket = shape_bucket(B, 0 if mode == "decode" else B * -(-T // CHUNK), H)
    start = lookup(arch, bucket)
    if mode == "decode":
        measure, search = _decode_timer(B, H, D), DECODE_SEARCH
    else:
        measure, search = _timer(_inputs(B, T, H, D, mode == "fwdbwd"), mode == "fwdbwd"), SEARCH
    best_ms, ref = measure(start)
    best = start
    log(f"{arch} / {bucket}: table row {best_ms:.3f}")
    for name, values in search.items():
        if mode == "fwd" and name not in _FORWARD_ONLY:
            continue
        for value in values:
            if value == getattr(best, name):
                continue
            cand = replace(best, **{name: value})
            got = measure(cand)
            if got is None:
                log(f"  {name}={value}: does not fit")
                continue
            ms, out = got
            diff = ((out - ref).norm() / ref.norm()).item()
            keep = ms < best_ms * (1 - min_gain) and diff < 1e-2
            log(f"  {name}={value}: {ms:.3f}, diff {diff:.1e}{'  (kept)' if keep else ''}")
            if keep:
                best, best_ms = cand, ms
    return best, f"({arch!r}, {bucket!r})"


def row_source(row: Tuning, key: str) -> str:
    """The TABLE entry for `row`: its changes from the default Tuning()."""
    base = Tuning()
    changes = ", ".join(
        f"{f.name}={getattr(row, f.name)!r}"
        for f in fields(Tuning)
        if getattr(row, f.name) != getattr(base, f.name)
    )
    return f"{key}: Tuning({changes}),"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", required=True, help="B x T, e.g. 1x65536")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=128, choices=(16, 32, 64, 128))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--backward", action="store_true", help="time forward + backward (also tunes bwd_*)")
    mode.add_argument("--decode", action="store_true", help="tune the decode step (B sequences, one token)")
    ap.add_argument("--min-gain", type=float, default=0.02, help="keep a change only if this much faster")
    ap.add_argument("--out", default=None, help="write the row as JSON here")
    args = ap.parse_args(argv)
    try:
        B, T = (int(x) for x in args.shape.lower().split("x"))
    except ValueError:
        print(f"--shape must be BxT, e.g. 1x65536 (got {args.shape!r})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("autotune needs a CUDA GPU", file=sys.stderr)
        return 2
    if B < 1 or T < 1:
        print(f"--shape needs B, T >= 1 (got {args.shape!r})", file=sys.stderr)
        return 2
    mode = "decode" if args.decode else ("fwdbwd" if args.backward else "fwd")
    row, key = autotune(B, T, args.heads, args.head_dim, mode, args.min_gain)
    print(row_source(row, key))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {"key": key, "device": torch.cuda.get_device_name(), "row": row.as_dict()}, fh, indent=1
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
