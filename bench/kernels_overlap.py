"""Forward wall time at 1 x 65536 and 1 x 102400 with the state pass overlapped over 1 to 16 segments
(kernels.gdn2.chunk_fwd.STATE_SEGMENTS), FLA (tuned for each length) in the same run, and each variant's
output against segments=1.

    PYTHONPATH=<fla wheels>:. python3 bench/kernels_overlap.py
"""

from __future__ import annotations

import os

import torch
from kernels_bench import bench_ms, fla_fwd, make_inputs, ours_fwd, retune_fla

from kernels.gdn2 import chunk_fwd as cf

SEGS = (1, 2, 4, 8, 16)


def main() -> None:
    print(torch.cuda.get_device_name())
    rows = []
    os.environ["FLA_CACHE_RESULTS"] = "0"  # FLA tunes for each length (see kernels_bench.retune_fla)
    for T in (65536, 102400):
        retune_fla()
        xs = make_inputs(1, T)
        with torch.no_grad():
            cf.STATE_SEGMENTS = 1
            ref = ours_fwd(xs).float()
            row = {"T": T, "fla": bench_ms(lambda xs=xs: fla_fwd(xs), 100)}
            for segs in SEGS:
                cf.STATE_SEGMENTS = segs
                out = ours_fwd(xs).float()
                diff = ((out - ref).norm() / ref.norm()).item()
                row[segs] = (bench_ms(lambda xs=xs: ours_fwd(xs), 100), diff)
        rows.append(row)
        print(row, flush=True)
    print("\n| T | FLA fwd | " + " | ".join(f"{s} seg" for s in SEGS) + " |")
    for r in rows:
        cells = [f"{r[s][0]:.2f} ms ({r['fla'] / r[s][0]:.2f}x, diff {r[s][1]:.0e})" for s in SEGS]
        print(f"| {r['T']} | {r['fla']:.2f} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
