"""Per-kernel times and accuracy of tuning variants (`Tuning` field changes applied to the table's row;
gdn2_kernels/gdn2/tuning.py).

    PYTHONPATH=. python3 bench/kernels/kernels_probe.py

Forward variants: ms of each kernel at 1x102400 and 8x4096 (H=16, K=V=128, bf16; torch profiler, median of
5 calls) and the relative error of o against the float64 chunked reference at 2x4096, H=4. Backward
variants: ms of each kernel of one forward + backward at 1x102400, and the worst gradient error against the
float64 reference at 1x2048, H=2, with ordinary decay (g in [-5, -0.1]) and strong decay (g in [-20, -10]).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from gdn2_kernels.common.chunks import build_chunk_table
from gdn2_kernels.gdn2 import chunk_fwd as cf
from gdn2_kernels.gdn2.chunk import chunk_gdn2 as triton_chunk_gdn2
from gdn2_kernels.gdn2.reference import chunk_gdn2 as torch_chunk_gdn2
from gdn2_kernels.gdn2.tuning import Tuning, tuning_for


def inputs(B, T, H, K=128, V=128, seed=0, g_range=(-5.0, -0.1)):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(B, T, H, d, device="cuda", generator=gen).bfloat16() for d in (K, K, V))
    lo, hi = g_range
    g = lo + (hi - lo) * torch.rand(B, T, H, K, device="cuda", generator=gen)
    b = torch.rand(B, T, H, K, device="cuda", generator=gen).bfloat16()
    w = torch.rand(B, T, H, V, device="cuda", generator=gen).bfloat16()
    return [q, k, v, g, b, w]


def tuned(xs, changes: dict) -> Tuning:
    """The table's row for these inputs with `changes` applied."""
    B, T, H, _ = xs[0].shape
    return replace(tuning_for(xs[0].device, B, B * -(-T // 64), H), **changes)


def fwd(xs, changes: dict):
    B, T, H, K = xs[0].shape
    flat = [x.reshape(B * T, H, -1) for x in xs]
    table = build_chunk_table(B, T, 64, xs[0].device)
    o, _, _ = cf.chunk_gdn2_fwd(
        *flat, scale=K**-0.5, initial_state=None, output_final_state=False, table=table, l2norm_qk=True,
        tuning=tuned(xs, changes),
    )  # fmt: skip
    return o.view(B, T, H, -1)


def kernel_ms(xs, changes: dict) -> dict[str, float]:
    fwd(xs, changes)
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {}
    for _ in range(5):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fwd(xs, changes)
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            if ev.key.startswith("gdn2_"):
                times.setdefault(ev.key, []).append(ev.device_time_total / 1e3)
    return {k.replace("gdn2_fwd_kernel_", ""): statistics.median(v) for k, v in times.items()}


def grads(fn, xs, do, **kw):
    args = [x.detach().clone().requires_grad_() for x in xs]
    o, _ = fn(*args, **kw)
    (o * do).sum().backward()
    return [a.grad for a in args]


class GradCheck:
    """Worst relative error over dq, dk, dv, dg, db, dw of the Triton backward against float64, at 1x2048,
    H=2. The float64 gradients are computed once and shared by every variant."""

    def __init__(self, g_range) -> None:
        self.xs = inputs(1, 2048, 2, seed=5, g_range=g_range)
        gen = torch.Generator("cuda").manual_seed(6)
        self.do = torch.randn(1, 2048, 2, 128, device="cuda", generator=gen)
        self.ref = grads(torch_chunk_gdn2, [x.double() for x in self.xs], self.do.double())

    def worst_error(self, changes: dict) -> float:
        ours = grads(triton_chunk_gdn2, self.xs, self.do.bfloat16(), tuning=tuned(self.xs, changes))
        return max(((a.double() - r).norm() / r.norm()).item() for a, r in zip(ours, self.ref, strict=True))


def fwd_bwd_kernel_ms(xs, changes: dict) -> dict[str, float]:
    xs = [x.detach().requires_grad_() for x in xs]
    do = torch.randn_like(xs[2])
    t = tuned(xs, changes)

    def step():
        o, _ = triton_chunk_gdn2(*xs, tuning=t)
        o.backward(do)

    step()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {}
    for _ in range(3):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            if ev.key.startswith("gdn2_"):
                times.setdefault(ev.key, []).append(ev.device_time_total / 1e3)
    return {k.replace("gdn2_", ""): statistics.median(v) for k, v in times.items()}


# (name, Tuning field changes), measured like VARIANTS
BWD_VARIANTS = [
    ("bwd: table row", {}),
    ("bwd: score gradients in tf32", {"bwd_precision": "tf32"}),
]


def probe_backward() -> None:
    big = inputs(1, 102400, 16)
    checks = GradCheck((-5.0, -0.1)), GradCheck((-20.0, -10.0))
    rows = []

    for name, changes in BWD_VARIANTS:
        try:
            errs = tuple(check.worst_error(changes) for check in checks)
            ms = fwd_bwd_kernel_ms(big, changes)
            rows.append((name, errs, ms))
            kern = cf.LAST_COMPILED.get("bwd_scores")
            regs = (kern.n_regs, kern.n_spills) if kern is not None else None
            print(name, f"grad err (ordinary, strong decay)={errs}", "bwd_scores regs, spills:", regs, ms)
        except Exception as exc:  # reported, not fatal
            print(name, "failed:", str(exc).splitlines()[-1], flush=True)
    cols = list(dict.fromkeys(k for r in rows for k in r[2]))
    print("\n| bwd variant | worst grad err | strong decay | " + " | ".join(cols) + " | total |")
    for name, errs, ms in rows:
        cells = [f"{ms.get(k, 0.0):.2f}" for k in cols]
        print(
            f"| {name} | {errs[0]:.2e} | {errs[1]:.2e} | "
            + " | ".join(cells)
            + f" | {sum(ms.values()):.2f} |"
        )


# (name, Tuning field changes); each is applied to the table's row for each size
VARIANTS = [
    ("table row (kernel times of overlapped segments overlap; their sum exceeds the wall time)", {}),
    ("one segment, no overlap", {"segments": 1}),
]


def main() -> None:
    small = inputs(2, 4096, 4, seed=1)
    ref, _ = torch_chunk_gdn2(*(x.double() for x in small))
    big = {"1x102400": inputs(1, 102400, 16), "8x4096": inputs(8, 4096, 16)}
    print(torch.cuda.get_device_name())
    rows = []

    def measure(changes: dict):
        o = fwd(small, changes)
        err = ((o.double() - ref).norm() / ref.norm()).item()
        ms = {size: kernel_ms(xs, changes) for size, xs in big.items()}
        return err, ms, {k: (kern.n_regs, kern.n_spills) for k, kern in cf.LAST_COMPILED.items()}

    for name, changes in VARIANTS:
        cf.LAST_COMPILED.clear()
        try:
            err, ms, regs = measure(changes)
            rows.append((name, err, ms, regs))
            print(name, f"err={err:.2e}", "(regs, spills)=", regs, ms, flush=True)
        except Exception as exc:  # a variant that does not fit (e.g. shared memory) is reported, not fatal
            print(name, "failed:", str(exc).splitlines()[-1], flush=True)
    # every kernel any variant launched, then each size's total
    cols = [(size, k) for size in big for k in dict.fromkeys(k for r in rows for k in r[2][size])]
    cols += [(size, "total") for size in big]
    print("\n| variant | err vs fp64 | " + " | ".join(f"{size} {k}" for size, k in cols) + " |")
    for name, err, ms, _ in rows:
        totals = {size: sum(ms[size].values()) for size in big}
        cells = [f"{totals[size] if k == 'total' else ms[size].get(k, 0.0):.2f}" for size, k in cols]
        print(f"| {name} | {err:.2e} | " + " | ".join(cells) + " |")
    probe_backward()


if __name__ == "__main__":
    main()
