"""Forward wall time of tuning variants at 1 x 65536, 1 x 102400 and the batches, FLA (tuned for each size)
in the same run, and each variant's output against the first variant's.

    cd bench/kernels && PYTHONPATH=<fla wheels>:../.. python3 kernels_overlap.py [1x65536 ["name;name"]]

A variant is a set of `Tuning` field changes applied to the table's row for each size
(gdn2_kernels/gdn2/tuning.py). The optional second argument keeps the variants whose names contain one of
the ';'-separated parts (the first kept variant is the reference for the output differences). What the
earlier variants measured is in gdn2_kernels/NOTES.md.
"""

from __future__ import annotations

import os
import sys

import torch
from kernels_bench import bench_ms, fla_fwd, make_inputs, ours_fwd, retune_fla, tuned

from gdn2_kernels.gdn2 import chunk_fwd as cf

VARIANTS: list[tuple[str, dict]] = [
    ("table row", {}),
    ("1 segment", {"segments": 1}),
    ("8 segments", {"segments": 8}),
    ("last segment at V blocks of 64", {"segment_last_block_v": 64}),
    ("scores uncapped", {"scores_maxnreg": None}),
    ("WY K blocks of 128, stores in order", {"wy_block_k": 128, "wy_loads_first": False}),
    ("no Ut prefetch", {"segment_ut_prefetch": False}),
]
SIZES = [(1, 65536), (1, 102400), (8, 4096), (2, 16384)]


def main() -> None:
    sizes, variants = SIZES, list(VARIANTS)
    if len(sys.argv) > 1:  # e.g. 1x65536,1x102400
        sizes = [tuple(int(x) for x in bt.split("x")) for bt in sys.argv[1].split(",")]
    if len(sys.argv) > 2:  # e.g. "1 segment;uncapped"
        variants = [(name, c) for name, c in VARIANTS if any(p in name for p in sys.argv[2].split(";"))]
    print(torch.cuda.get_device_name())
    os.environ["FLA_CACHE_RESULTS"] = "0"  # FLA tunes for each length (see kernels_bench.retune_fla)
    rows = []
    for B, T in sizes:
        retune_fla()
        xs = make_inputs(B, T)
        with torch.no_grad():
            row = {"T": f"{B}x{T}", "fla": bench_ms(lambda xs=xs: fla_fwd(xs), 100)}
            ref = None
            for name, changes in variants:
                t = tuned(xs, **changes)
                out = ours_fwd(xs, t).float()
                ms = bench_ms(lambda xs=xs, t=t: ours_fwd(xs, t), 100)
                st = cf.LAST_COMPILED["state_o"].metadata
                print(f"{B}x{T} {name}: {ms:.3f} ms; state pass {st.num_stages} stages, {st.shared} B smem")
                ref = out if ref is None else ref
                row[name] = (ms, ((out - ref).norm() / ref.norm()).item())
        rows.append(row)
        print(row, flush=True)
    print("\n| T | FLA fwd | " + " | ".join(name for name, _ in variants) + " |")
    for r in rows:
        cells = [f"{r[n][0]:.2f} ms ({r['fla'] / r[n][0]:.2f}x, diff {r[n][1]:.0e})" for n, _ in variants]
        print(f"| {r['T']} | {r['fla']:.2f} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
