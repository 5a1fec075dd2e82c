"""Forward wall time at 1 x 65536, 1 x 102400 (and the batches) of state-pass variants (module constants
of kernels.gdn2.chunk_fwd: STATE_SEGMENTS, STATE_STAGES, SEGMENT_BLOCK_V, SEGMENT_STATE_WARPS,
SEGMENT_SHRINK, UT_IN_STATE_PASS), FLA (tuned for each size) in the same run, and each variant's output
against the first variant's.

    PYTHONPATH=<fla wheels>:. python3 bench/kernels_overlap.py
"""

from __future__ import annotations

import os
import sys

import torch
from kernels_bench import bench_ms, fla_fwd, make_inputs, ours_fwd, retune_fla

from kernels.gdn2 import chunk_fwd as cf

# (name, module constants). Measured on one H200 (2026-11-27, 100k): 1 segment 6.31 ms, 2: 6.00, 4: 5.86,
# 8: 5.87, 16: 6.04 (FLA 7.85); V blocks of 64 in 8 segments 5.46-5.57, shrink 0.7: 5.46
V12 = {"STATE_SEGMENTS": 4, "SEGMENT_BLOCK_V": 16, "SEGMENT_SHRINK": 1.0, "WY_STREAM": False}
V13 = {"STATE_SEGMENTS": 8, "SEGMENT_BLOCK_V": 64, "SEGMENT_SHRINK": 0.7, "WY_STREAM": False}
WYS = {"WY_STREAM": True}
OLD = {"STATE_TRANSPOSED": False, "STATE_OUTPUT_LAST": False}
TR = {"STATE_TRANSPOSED": True}
VARIANTS = [
    ("1 segment", {"STATE_SEGMENTS": 1, **OLD}),
    ("v12: 4 seg, BV 16", {**V12, **OLD}),
    ("v13: 8 seg, BV 64, shrink 0.7", {**V13, **OLD}),
    # the state update first in each step, the output's products after it
    ("v13, output last", {**V13, **OLD, "STATE_OUTPUT_LAST": True}),
    # the state pass on S^T: products take S^T and U^T from registers (and 174 KB of shared memory at BV 64
    # instead of 213, so intra programs fit beside it)
    ("1 segment, S^T", {"STATE_SEGMENTS": 1, **TR}),
    ("v13, S^T", {**V13, **TR}),
    ("v13 + WY stream, S^T", {**V13, **WYS, **TR}),
    ("v13, S^T, 2 stages", {**V13, **TR, "STATE_STAGES": 2}),
    ("v13, S^T, BV 32", {**V13, **TR, "SEGMENT_BLOCK_V": 32}),
]
SIZES = [(1, 65536), (1, 102400), (8, 4096), (2, 16384)]


def with_constants(consts: dict, fn):
    saved = {key: getattr(cf, key) for key in consts}
    for key, value in consts.items():
        setattr(cf, key, value)
    try:
        return fn()
    finally:
        for key, value in saved.items():
            setattr(cf, key, value)


def main() -> None:
    sizes = SIZES
    if len(sys.argv) > 1:  # e.g. 1x65536,1x102400
        sizes = [tuple(int(x) for x in bt.split("x")) for bt in sys.argv[1].split(",")]
    print(torch.cuda.get_device_name())
    os.environ["FLA_CACHE_RESULTS"] = "0"  # FLA tunes for each length (see kernels_bench.retune_fla)
    rows = []
    for B, T in sizes:
        retune_fla()
        xs = make_inputs(B, T)
        with torch.no_grad():
            row = {"T": f"{B}x{T}", "fla": bench_ms(lambda xs=xs: fla_fwd(xs), 100)}
            ref = None
            for name, consts in VARIANTS:

                def measure(xs=xs):
                    return ours_fwd(xs).float(), bench_ms(lambda: ours_fwd(xs), 100)

                out, ms = with_constants(consts, measure)
                st = cf.LAST_COMPILED["state_o"].metadata
                print(f"{B}x{T} {name}: {ms:.3f} ms; state pass {st.num_stages} stages, {st.shared} B smem")
                ref = out if ref is None else ref
                row[name] = (ms, ((out - ref).norm() / ref.norm()).item())
        rows.append(row)
        print(row, flush=True)
    print("\n| T | FLA fwd | " + " | ".join(name for name, _ in VARIANTS) + " |")
    for r in rows:
        cells = [f"{r[n][0]:.2f} ms ({r['fla'] / r[n][0]:.2f}x, diff {r[n][1]:.0e})" for n, _ in VARIANTS]
        print(f"| {r['T']} | {r['fla']:.2f} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
