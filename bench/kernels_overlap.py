"""Forward wall time at 1 x 65536 and 1 x 102400 of state-pass overlap variants (module constants of
kernels.gdn2.chunk_fwd: STATE_SEGMENTS, STATE_STAGES), FLA (tuned for each length) in the same run, and each
variant's output against the first variant's.

    PYTHONPATH=<fla wheels>:. python3 bench/kernels_overlap.py
"""

from __future__ import annotations

import os

import torch
from kernels_bench import bench_ms, fla_fwd, make_inputs, ours_fwd, retune_fla

from kernels.gdn2 import chunk_fwd as cf

# (name, module constants); measured on one H200 (2026-11-27, 100k): 1 segment 6.31 ms, 2: 6.00, 4: 5.86,
# 8: 5.87, 16: 6.04 (FLA 7.85)
VARIANTS = [
    ("1 segment", {"STATE_SEGMENTS": 1}),
    ("4 segments (default)", {}),
    ("8 segments", {"STATE_SEGMENTS": 8}),
    # untried: fewer pipeline stages leave shared memory for the intra programs beside the state pass
    ("4 segments, 2 stages", {"STATE_STAGES": 2}),
    ("8 segments, 2 stages", {"STATE_SEGMENTS": 8, "STATE_STAGES": 2}),
]


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
    print(torch.cuda.get_device_name())
    os.environ["FLA_CACHE_RESULTS"] = "0"  # FLA tunes for each length (see kernels_bench.retune_fla)
    rows = []
    for T in (65536, 102400):
        retune_fla()
        xs = make_inputs(1, T)
        with torch.no_grad():
            row = {"T": T, "fla": bench_ms(lambda xs=xs: fla_fwd(xs), 100)}
            ref = None
            for name, consts in VARIANTS:

                def measure(xs=xs):
                    return ours_fwd(xs).float(), bench_ms(lambda: ours_fwd(xs), 100)

                out, ms = with_constants(consts, measure)
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
