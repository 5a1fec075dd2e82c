"""Decode step A/B, one process, one card: a baseline decode kernel file (another tree's
`gdn2_kernels/gdn2/fused_recurrent.py`) against this tree's, over V blocks and warps, beside FLA's in-place
state call, each as a one-step CUDA graph timed like `kernels_bench.py` (do_bench medians, L2 flushed),
errors of o and of the new state against float64.

    PYTHONPATH=/tmp/site:. python3 bench/kernels/decode_ab.py \\
        --baseline ../gdn2_kernels/gdn2/fused_recurrent.py

Rounds interleave the variants, so clock drift spreads over all of them; the table gives each one's median.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kernels_bench import H, K, V, bench_ms, graphed, make_inputs  # noqa: E402

from gdn2_kernels.gdn2 import fused_recurrent  # noqa: E402
from gdn2_kernels.gdn2.reference import recurrent_gdn2  # noqa: E402


def _load(path: str):
    spec = importlib.util.spec_from_file_location("baseline_fused_recurrent", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rel(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return ((got - ref).norm() / ref.norm()).item()


def _step(mod, scale: float, bv: int, warps: int):
    """One decode step of a fused_recurrent module with these launch settings, o returned."""

    def step(xs, s):
        return mod.fused_recurrent_gdn2_step(*xs, s, scale=scale, l2norm_qk=True, block_v=bv, num_warps=warps)

    return step


def _fla_steps(fwd, o_buf) -> dict:
    """FLA's in-place state call as kernels_bench times it, and with its output buffer given."""

    def fla(xs, s):
        return fwd(*xs, initial_state=s, inplace_final_state=True, use_qk_l2norm_in_kernel=True)[0]

    def fla_out(xs, s):
        return fwd(*xs, initial_state=s, inplace_final_state=True, use_qk_l2norm_in_kernel=True, out=o_buf)[0]

    # with `out` given its graph holds one kernel like ours (no zeros_like before it)
    return {"FLA in-place": fla, "FLA in-place, out given": fla_out}


def run_batch(B: int, base, fla_fwd, rounds: int) -> list[dict]:
    scale = K**-0.5
    xs = [x.contiguous() for x in make_inputs(B, 1, seed=1)]
    state0 = torch.randn(B, H, K, V, device="cuda") * 0.1
    o_ref, s_ref = recurrent_gdn2(
        *(x.double() for x in xs), scale=scale, initial_state=state0.double(), output_final_state=True
    )
    variants = {"baseline bv16 w1": _step(base, scale, 16, 1)}
    for bv, warps in ((16, 1), (8, 1), (32, 1), (16, 2), (32, 2), (64, 4)):
        variants[f"new bv{bv} w{warps}"] = _step(fused_recurrent, scale, bv, warps)
    if fla_fwd is not None:
        variants.update(_fla_steps(fla_fwd, torch.empty_like(xs[2])))
    errs, replays = {}, {}
    for name, fn in variants.items():
        s = state0.clone()
        errs[name] = {"o": _rel(o_ref, fn(xs, s)), "state": _rel(s_ref, s)}
        s_graph = state0.clone()
        replays[name] = graphed(lambda fn=fn, s=s_graph: fn(xs, s))
    z = torch.zeros(1, device="cuda")
    replays["empty graph (one zero_)"] = graphed(z.zero_)
    times: dict[str, list[float]] = {name: [] for name in replays}
    for _ in range(rounds):
        for name, replay in replays.items():
            times[name].append(bench_ms(replay) * 1e3)
    rows = []
    for name, ts in times.items():
        row = {"B": B, "variant": name, "us": statistics.median(ts), "rounds": ts, **errs.get(name, {})}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="path of the baseline fused_recurrent.py")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    base = _load(args.baseline)
    try:
        from fla.ops.gdn2.fused_recurrent import fused_recurrent_gdn2_fwd
    except ImportError:
        fused_recurrent_gdn2_fwd = None
    rows = []
    for B in (int(b) for b in args.batches.split(",")):
        rows += run_batch(B, base, fused_recurrent_gdn2_fwd, args.rounds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, fh)
    print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}\n")
    print("| B | variant | graph µs (median of rounds) | o err vs fp64 | state err vs fp64 |")
    print("|---|---|---|---|---|")
    for r in rows:
        err = f"{r['o']:.2e} | {r['state']:.2e}" if "o" in r else "- | -"
        print(f"| {r['B']} | {r['variant']} | {r['us']:.2f} | {err} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
