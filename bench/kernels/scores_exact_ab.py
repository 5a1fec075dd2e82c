"""The scores kernel's exact diagonal (sub-chunks decaying by more than SPAN), two ways, same run, one card:
the 16-step column loop (`_exact_diag`) against the level-wise products (`_exact_diag_levels`; the rows
choose by head size, `Tuning.scores_exact_levels_max_k`; here each is forced at every K). Forward time at
the reader's and the benchmark's shapes under decays that send most sub-chunks down the exact path (the
trained reader's, issue 19) and under mild ones (the common path, as a control), and the forward's errors
against float64.

    PYTHONPATH=. python3 bench/kernels/scores_exact_ab.py
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "kernels"))

from gdn2_testutils import rand_inputs, rel_err  # noqa: E402

from gdn2_kernels.gdn2 import chunk as triton_chunk  # noqa: E402
from gdn2_kernels.gdn2.reference import chunk_gdn2 as reference  # noqa: E402
from gdn2_kernels.gdn2.tuning import tuning_for  # noqa: E402

# (name, B, T, H, K, V): the shipped reader (6 heads of 64) over one 100k context, and
# kernels_bench's long shape
SHAPES = [("reader 1x100k", 1, 102400, 6, 64, 64), ("benchmark 1x100k", 1, 102400, 16, 128, 128)]
DECAYS = {"strong (-12, -4)": (-12.0, -4.0), "mild (-5, -0.1)": (-5.0, -0.1)}
# (name, levels at every K, scores_maxnreg): the levels hold more live tiles, so also without the cap
VARIANTS = [
    ("loop", False, 168), ("levels", True, 168),
    ("levels uncapped", True, None), ("loop uncapped", False, None),
]  # fmt: skip


def _inputs(B, T, H, K, V, g_range, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(B, T, H, d, device="cuda", generator=gen).bfloat16() for d in (K, K, V))
    lo, hi = g_range
    g = lo + (hi - lo) * torch.rand(B, T, H, K, device="cuda", generator=gen)
    b, w = (torch.rand(B, T, H, d, device="cuda", generator=gen).bfloat16() for d in (K, V))
    return [q, k, v, g, b, w]


def main() -> None:
    import triton

    rows = []
    for name, B, T, H, K, V in SHAPES:
        for dname, g_range in DECAYS.items():
            xs = _inputs(B, T, H, K, V, g_range, seed=T + K)
            base = tuning_for(torch.device("cuda"), B, B * -(-T // 64), H)
            row = {"shape": name, "decay": dname}
            for variant, levels, cap in VARIANTS:
                t = replace(base, scores_exact_levels_max_k=128 if levels else 0, scores_maxnreg=cap)

                def fwd(t=t, xs=xs):
                    return triton_chunk.chunk_gdn2(*xs, l2norm_qk=True, tuning=t)[0]

                row[f"{variant}_ms"] = triton.testing.do_bench(fwd, warmup=10, rep=150, return_mode="median")
            rows.append(row)
            print(json.dumps(row), flush=True)
    # errors against float64 on a shorter sequence with the same decays
    errs = []
    for dname, g_range in DECAYS.items():
        for K in (64, 128, 16):
            xs = rand_inputs(1, 2000, 2, K, K, dtype=torch.bfloat16, device="cuda", seed=K, g_range=g_range)
            o_ref, h_ref = reference(*[x.double() for x in xs], output_final_state=True)
            row = {"decay": dname, "K": K}
            for variant, levels in (("loop", False), ("levels", True)):
                row_t = tuning_for(torch.device("cuda"), 1, 32, 2)
                t = replace(row_t, scores_exact_levels_max_k=128 if levels else 0)
                o, h = triton_chunk.chunk_gdn2(*xs, output_final_state=True, tuning=t)
                row[f"{variant}_o_err"], row[f"{variant}_h_err"] = rel_err(o_ref, o), rel_err(h_ref, h)
            errs.append(row)
            print(json.dumps(row), flush=True)
    names = [v[0] for v in VARIANTS]
    print("\n| shape | decay | " + " | ".join(f"{n} ms" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['shape']} | {r['decay']} | " + " | ".join(f"{r[n + '_ms']:.3f}" for n in names) + " |")
    print("\n| decay | K | o err loop | o err levels | h err loop | h err levels |")
    print("|---|---|---|---|---|---|")
    for r in errs:
        print(f"| {r['decay']} | {r['K']} | {r['loop_o_err']:.2e} | {r['levels_o_err']:.2e} | "
              f"{r['loop_h_err']:.2e} | {r['levels_h_err']:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
