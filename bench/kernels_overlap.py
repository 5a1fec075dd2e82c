"""Forward wall time at 1 x 65536, 1 x 102400 (and the batches) of variants set by module constants of
gdn2_kernels.gdn2.chunk_fwd (STATE_SEGMENTS, SEGMENT_LAST_BLOCK_V, SCORES_MAXNREG, WY_BK, ...), FLA (tuned for
each size) in the same run, and each variant's output against the first variant's.

    cd bench && PYTHONPATH=<fla wheels>:.. python3 kernels_overlap.py [1x65536,1x102400 ["name;name"]]

The optional second argument keeps the variants whose names contain one of the ';'-separated parts (the
first kept variant is the reference for the output differences). A variant's constants apply on top of the
current defaults. A variant may instead name a saved copy of chunk_fwd.py to run (key "_module"), e.g. the
v14 baseline: `git show ec17e32:gdn2_kernels/gdn2/chunk_fwd.py > bench/chunk_fwd_v14.py`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import torch
from kernels_bench import bench_ms, fla_fwd, make_inputs, ours_fwd, retune_fla

from gdn2_kernels.gdn2 import chunk as chunk_mod
from gdn2_kernels.gdn2 import chunk_fwd as cf

# (name, module constants). Measured on one H200 (2026-11-27), 1 x 102400, FLA 7.87 ms: one segment 6.30,
# v12 (4 segments, V blocks of 16) 5.84-6.05, v13 (8, V blocks of 64, shrink 0.7) 5.25-5.48, v14 (v13 with
# Ut prefetched) 5.23-5.25, v15 (scores at 168 registers, WY K blocks of 64 loaded first, 6 segments, the
# last state pass at V blocks of 16) 5.06. Tried and dropped (raw: bench/results/raw/kernels_overlap_v1*):
# V blocks of 128 (7.9), 2 stages (5.8-6.3), 8 warps (6.0), Ut made in the state pass (6.24 vs 6.28 in one
# segment, slower overlapped), Qg stored by the scores kernel (6.41 vs 6.30), WY on a third stream (5.25 vs
# 5.27), the state update before the output products (5.38 vs 5.27), the state pass on S^T with register
# operands (6.50), the scores of a chunk in one program reading each sub-chunk once (7.06 vs 6.30 in one
# segment; 6.53 overlapped); with the prefetch: V blocks of 128 at 8 warps (7.90), V blocks of 64 at 8 warps
# (5.70); the v15 ablations are in the comments of gdn2_kernels/gdn2/chunk_fwd.py. Older rows: commit 55d0362
V13 = {
    "STATE_SEGMENTS": 8,
    "SEGMENT_BLOCK_V": 64,
    "SEGMENT_SHRINK": 0.7,
    "SEGMENT_UT_PREFETCH": False,
    "SEGMENT_LAST_BLOCK_V": None,
}
V14_SCHEDULE = {**V13, "SEGMENT_UT_PREFETCH": True}
V14_INTRA = {"SCORES_MAXNREG": None, "WY_BK": 128, "WY_LOADS_FIRST": False}
VARIANTS = [
    ("v14 (ec17e32)", {"_module": "chunk_fwd_v14"}),
    ("v15", {}),
    ("1 segment", {"STATE_SEGMENTS": 1}),
    ("v13 schedule", V13),
    ("v14 schedule", V14_SCHEDULE),
    ("v15, 8 segments", {"STATE_SEGMENTS": 8}),
    ("v15, last V blocks of 64", {"SEGMENT_LAST_BLOCK_V": None}),
    ("v15, scores uncapped", {"SCORES_MAXNREG": None}),
    ("v15, WY K blocks of 128", {"WY_BK": 128, "WY_LOADS_FIRST": False}),
    ("v14 constants", {**V14_SCHEDULE, **V14_INTRA}),
]
SIZES = [(1, 65536), (1, 102400), (8, 4096), (2, 16384)]


def with_constants(consts: dict, fn):
    """fn() with the module constants `consts` set (and `_module`'s forward, if named); returns (fn(), the
    forward's module)."""
    consts = dict(consts)
    module = importlib.import_module(consts.pop("_module")) if "_module" in consts else cf
    saved = {key: getattr(cf, key) for key in consts}
    saved_fwd = chunk_mod.chunk_gdn2_fwd
    chunk_mod.chunk_gdn2_fwd = module.chunk_gdn2_fwd
    for key, value in consts.items():
        setattr(cf, key, value)
    try:
        return fn(), module
    finally:
        chunk_mod.chunk_gdn2_fwd = saved_fwd
        for key, value in saved.items():
            setattr(cf, key, value)


def main() -> None:
    sizes, variants = SIZES, list(VARIANTS)
    if len(sys.argv) > 1:  # e.g. 1x65536,1x102400
        sizes = [tuple(int(x) for x in bt.split("x")) for bt in sys.argv[1].split(",")]
    if len(sys.argv) > 2:  # e.g. "1 segment;v13"
        variants = [(name, c) for name, c in VARIANTS if any(p in name for p in sys.argv[2].split(";"))]
    for name, c in list(variants):
        if "_module" in c and importlib.util.find_spec(c["_module"]) is None:
            print(f"skipped {name!r}: no bench/{c['_module']}.py (see the docstring)")
            variants.remove((name, c))
    print(torch.cuda.get_device_name())
    os.environ["FLA_CACHE_RESULTS"] = "0"  # FLA tunes for each length (see kernels_bench.retune_fla)
    rows = []
    for B, T in sizes:
        retune_fla()
        xs = make_inputs(B, T)
        with torch.no_grad():
            row = {"T": f"{B}x{T}", "fla": bench_ms(lambda xs=xs: fla_fwd(xs), 100)}
            ref = None
            for name, consts in variants:

                def measure(xs=xs):
                    return ours_fwd(xs).float(), bench_ms(lambda: ours_fwd(xs), 100)

                (out, ms), module = with_constants(consts, measure)
                st = module.LAST_COMPILED["state_o"].metadata
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
