"""Compile every GDN-2 kernel, with the launch settings of a tuning row, for a named GPU architecture on a
machine without a GPU, and read what decides whether and how well it runs there: shared memory per
program (against the architecture's limit), registers and spilled bytes (ptxas, bundled with Triton).

Used by tests/kernels/test_compile_targets.py (every row fits its target) and by
bench/kernels/compile_report.py (the table in bench/results/kernels.md). Head sizes are the largest the
kernels take (K = V = 128): shared memory and registers only shrink with smaller heads.

Pointer arguments carry the 16-byte divisibility the launcher gives real tensors: without it Triton emits
no asynchronous copies and the shared-memory sizes are not the ones the GPU sees.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from gdn2_kernels.gdn2.chunk_bwd import (
    gdn2_bwd_kernel_finish,
    gdn2_bwd_kernel_scores,
    gdn2_bwd_kernel_state,
    gdn2_bwd_kernel_wy_finish,
    gdn2_bwd_kernel_wy_keys,
    gdn2_bwd_kernel_wy_values,
)
from gdn2_kernels.gdn2.chunk_fwd import scores_exact_levels, wy_block
from gdn2_kernels.gdn2.chunk_intra import SPAN, gdn2_fwd_kernel_scores
from gdn2_kernels.gdn2.chunk_state import gdn2_fwd_kernel_state_o
from gdn2_kernels.gdn2.chunk_wy import gdn2_fwd_kernel_wy
from gdn2_kernels.gdn2.fused_recurrent import gdn2_fused_recurrent_kernel
from gdn2_kernels.gdn2.tuning import BUCKETS, SHARED_LIMIT, TABLE, Tuning

H, K, V, C, BC = 16, 128, 128, 64, 16
# pointer arguments in the model's input dtype (bf16); the rest of the pointers are float32
_INPUT_ARGS = {"q", "k", "b", "v", "w", "o", "do", "dv", "dw", "db", "dq", "dk"}
# pointer arguments stored in the row's work dtype (the state pass's operands, L and P)
_WORK_ARGS = {"L", "P", "kb", "ut", "qg", "ke"}
_INT_ARGS = {"chunk_bos", "chunk_len", "seq_chunks"}
_SCALARS = {"scale": "fp32", "c0": "i32", "T": "i32"}


@dataclass(frozen=True)
class Launch:
    """One kernel as a row launches it: constexprs, pointer arguments passed as None, warps, stages and
    register cap."""

    name: str
    fn: object
    constexprs: tuple[tuple[str, object], ...]
    num_warps: int
    num_stages: int = 3
    none_args: tuple[str, ...] = ()
    maxnreg: int | None = None
    work_dtype: torch.dtype = torch.bfloat16

    def key(self) -> tuple:
        """What the compiled code depends on (two rows launching the same kernel alike share it)."""
        return (self.fn, self.constexprs, self.num_warps, self.num_stages, self.none_args, self.maxnreg,
                self.work_dtype)  # fmt: skip


@dataclass(frozen=True)
class Compiled:
    """What one kernel needs on one architecture."""

    shared: int
    registers: int
    spill_bytes: int
    shared_limit: int

    @property
    def fits(self) -> bool:
        return self.shared <= self.shared_limit


def _c(**kw) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(kw.items()))


def launches(t: Tuning) -> list[Launch]:
    """Every kernel launch the row `t` makes at K = V = 128 (forward with and without gradients, the
    segmented schedule, the backward's recompute and kernels, decode), and the scores kernel at the largest
    K that takes the exact diagonal by levels."""
    wd = t.work_dtype
    shape = dict(H=H, K=K, C=C, BC=BC)
    wy_bk, wy_pad = wy_block(t, K, V)

    def scores(name: str, k: int) -> Launch:
        return Launch(
            name, gdn2_fwd_kernel_scores,
            _c(H=H, K=k, C=C, BC=BC, L2NORM=True, SPAN=SPAN, PREC=t.scores_precision, EXACT_BK=min(32, k),
               EXACT_LEVELS=scores_exact_levels(t, k)),
            t.scores_warps, maxnreg=t.scores_maxnreg, work_dtype=wd,
        )  # fmt: skip

    out = [scores("fwd scores", K)]
    if t.scores_exact_levels_max_k:
        # heads up to scores_exact_levels_max_k take the exact diagonal by levels: compiled at that K
        kl = min(t.scores_exact_levels_max_k, K)
        out.append(scores(f"fwd scores (exact diagonal by levels, K = {kl})", kl))
    out += [
        Launch(
            "fwd wy", gdn2_fwd_kernel_wy,
            _c(**shape, V=V, BK=wy_bk, PAD=wy_pad, PREC=t.wy_precision, INVERT=True, STORE_A=False,
               LOADS_FIRST=t.wy_loads_first),
            t.wy_warps, none_args=("A",), maxnreg=t.wy_maxnreg, work_dtype=wd,
        ),
        Launch(
            "fwd wy (training: stores A)", gdn2_fwd_kernel_wy,
            _c(**shape, V=V, BK=wy_bk, PAD=wy_pad, PREC=t.wy_precision, INVERT=True, STORE_A=True,
               LOADS_FIRST=t.wy_loads_first),
            t.wy_warps, maxnreg=t.wy_maxnreg, work_dtype=wd,
        ),
        Launch(
            "bwd recompute wy", gdn2_fwd_kernel_wy,
            _c(**shape, V=V, BK=wy_bk, PAD=wy_pad, PREC=t.wy_precision, INVERT=False, STORE_A=False,
               LOADS_FIRST=t.wy_loads_first),
            t.wy_warps, none_args=("L",), maxnreg=t.wy_maxnreg, work_dtype=wd,
        ),
    ]  # fmt: skip
    state = dict(**shape, V=V, HAS_H0=True)

    def state_o(name: str, bv: int, stages: int, prefetch: bool, recompute: bool = False) -> Launch:
        return Launch(
            name, gdn2_fwd_kernel_state_o,
            _c(**state, BV=min(bv, V), STORE_HT=not recompute, STORE_H=recompute, STORE_O=not recompute,
               UT_PREFETCH=prefetch),
            t.state_warps, stages, none_args=("o", "ht") if recompute else ("h",), work_dtype=wd,
        )  # fmt: skip

    out.append(state_o(f"fwd state (V blocks of {t.state_block_v})", t.state_block_v, t.state_stages, False))
    out.append(state_o("bwd recompute state", t.state_block_v, t.state_stages, False, recompute=True))
    if t.segments > 1:
        out.append(
            state_o(
                f"fwd state, overlapped segment (V blocks of {t.segment_block_v})",
                t.segment_block_v, t.segment_stages, t.segment_ut_prefetch,
            )
        )  # fmt: skip
        out.append(
            state_o(
                f"fwd state, last segment (V blocks of {t.segment_last_block_v})",
                t.segment_last_block_v, t.state_stages, t.segment_ut_prefetch,
            )
        )  # fmt: skip
    bwd_bv, bwd_bk = min(t.bwd_wy_block_v, V), min(t.bwd_wy_block_k, K)
    out += [
        Launch(
            f"bwd state (V blocks of {t.bwd_state_block_v})", gdn2_bwd_kernel_state,
            _c(**shape, V=V, BV=min(t.bwd_state_block_v, V), HAS_DHT=True, STORE_DH0=True),
            t.bwd_state_warps, t.bwd_state_stages, work_dtype=wd,
        ),
        Launch("bwd wy values", gdn2_bwd_kernel_wy_values, _c(H=H, K=K, V=V, C=C, BV=bwd_bv), t.bwd_wy_warps,
               t.bwd_wy_stages, work_dtype=wd),
        Launch("bwd wy keys", gdn2_bwd_kernel_wy_keys, _c(H=H, K=K, V=V, C=C, BV=bwd_bv, BK=bwd_bk),
               t.bwd_wy_warps, t.bwd_wy_stages, work_dtype=wd),
        Launch("bwd wy finish", gdn2_bwd_kernel_wy_finish, _c(H=H, C=C, NKB=K // bwd_bk),
               t.bwd_wy_finish_warps, work_dtype=wd),
        Launch(
            "bwd scores", gdn2_bwd_kernel_scores,
            _c(**shape, BK=min(t.bwd_scores_block_k, K), SPAN=SPAN, PREC=t.bwd_precision),
            t.bwd_scores_warps, work_dtype=wd,
        ),
        Launch("bwd finish", gdn2_bwd_kernel_finish, _c(**shape, L2NORM=True), 4, work_dtype=wd),
        Launch(
            f"decode (V blocks of {t.decode_block_v})", gdn2_fused_recurrent_kernel,
            _c(H=H, K=K, V=V, BV=min(t.decode_block_v, V), L2NORM=True), t.decode_warps, work_dtype=wd,
        ),
    ]  # fmt: skip
    return out


def _signature(launch: Launch) -> tuple[dict, dict, dict]:
    work = {torch.bfloat16: "*bf16", torch.float32: "*fp32"}[launch.work_dtype]
    consts = {**dict(launch.constexprs), **{name: None for name in launch.none_args}}
    names = launch.fn.arg_names
    sig = {}
    for name in names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in _SCALARS:
            sig[name] = _SCALARS[name]
        elif name in _INPUT_ARGS:
            sig[name] = "*bf16"
        elif name in _WORK_ARGS:
            sig[name] = work
        elif name in _INT_ARGS:
            sig[name] = "*i32"
        else:
            sig[name] = "*fp32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if sig[name].startswith("*")}
    constexprs = {(names.index(k),): v for k, v in consts.items()}
    return sig, constexprs, attrs


def _ptxas_usage(ptx: str, arch: str) -> tuple[int, int]:
    """(registers, spilled bytes: stores + loads) that ptxas reports for this PTX."""
    # the ptxas that Triton itself uses for this target (Triton 3.9 ships two; its PTX needs the newer one)
    ptxas = get_ptxas(int(arch[3:])).path
    gpu = "sm_90a" if arch == "sm_90" else arch
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        res = subprocess.run(
            [ptxas, "-v", "--gpu-name", gpu, path, "-o", os.path.join(tmp, "k.cubin")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", res.stderr)
    if regs is None or spills is None:
        raise RuntimeError(f"unexpected ptxas output: {res.stderr[-500:]}")
    return int(regs.group(1)), int(spills.group(1)) + int(spills.group(2))


_CACHE: dict = {}


def compile_for(launch: Launch, arch: str) -> Compiled:
    """`launch` compiled for `arch` ("sm_80", "sm_89", "sm_90"); cached per (launch, arch)."""
    key = (launch.key(), arch)
    if key not in _CACHE:
        sig, constexprs, attrs = _signature(launch)
        src = ASTSource(fn=launch.fn, signature=sig, constexprs=constexprs, attrs=attrs)
        options = {"num_warps": launch.num_warps, "num_stages": launch.num_stages}
        if launch.maxnreg is not None:
            options["maxnreg"] = launch.maxnreg
        kernel = triton.compile(src, target=GPUTarget("cuda", int(arch[3:]), 32), options=options)
        regs, spills = _ptxas_usage(kernel.asm["ptx"], arch)
        _CACHE[key] = Compiled(kernel.metadata.shared, regs, spills, SHARED_LIMIT[arch])
    return _CACHE[key]


# spilled bytes per thread a launch may have (ptxas stores + loads); everything else must not spill. The
# count depends on the Triton version: each bound covers Triton 3.6 (the GPU machine's, which measured the
# rows) and 3.9 (the lock's, which CI compiles with). Each is a measured trade, not an accident:
SPILL_BOUND: dict[str, int] = {
    # capped at 168 registers for 6 programs per SM instead of 4: faster on the H200 despite the spills
    # (NOTES.md, v15): sm_90 572 B with Triton 3.6, 180 B with 3.9; the sm_80 / sm_89 rows are uncapped
    "fwd scores": 640,
    # the same cap with the exact diagonal by levels (heads up to 64): its products hold more tiles, 1036 B on
    # sm_90 with Triton 3.6, 876 B with 3.9; still 8 % faster than the column loop on the H200 for the
    # reader's shape under strong decay, 1.5 % slower under mild (bench/results/kernels.md, scores_exact_ab)
    "fwd scores (exact diagonal by levels": 1100,
    # WY at 4 warps holds [64, 64] A and [64, K-block] tiles: 255 registers and 8-26 B spilled on sm_90 with
    # Triton 3.6 (90 B with 3.9), faster than 8 warps without spills (NOTES.md, v9)
    "fwd wy": 96,
    "bwd recompute wy": 96,
    # the score gradients at 4 warps and all 128 key columns per program, faster than narrower or wider
    # programs that do not spill (NOTES.md, v7): sm_90 196 B with Triton 3.6, but 908 B with 3.9, which
    # should be timed on the H200 before the lock's Triton runs there
    "bwd scores": 960,
    # dL = -A^T dA A^T in tf32x3 on [64, 64] fp32 tiles: no spills on sm_90; on sm_80 / sm_89 (mma.sync
    # keeps the products' accumulators in registers) 600 B with 2 key blocks of partial dA, 784 with the 4
    # their rows use, 472 at 8 warps. 2 % of the backward on the H200; left until measured on those GPUs
    "bwd wy finish": 800,
    # decode at V blocks of 32 and 1 warp holds a 128 x 32 float32 slice of the state (128 registers per
    # thread): ~200 B spilled on sm_90, which the sm_90 rows of 64+ sequence-heads take (fewer loads of
    # q, k, g, b per state column); sm_80 / sm_89 rows use V blocks of 16, which do not spill
    "decode": 256,
}


def spill_bound(name: str) -> int:
    """The spill bound of a launch by its name (0 unless listed in SPILL_BOUND)."""
    return max((b for prefix, b in SPILL_BOUND.items() if name.startswith(prefix)), default=0)


def _compile_table_entry(job: tuple[str, str, int]) -> Compiled:
    arch, bucket, index = job
    return compile_for(launches(TABLE[(arch, bucket)])[index], arch)


def compile_table(
    archs: tuple[str, ...], workers: int | None = None
) -> list[tuple[str, str, Launch, Compiled]]:
    """(arch, bucket, launch, result) for every distinct launch of the table's rows of `archs` (a launch
    shared by several buckets is listed under the first), compiled in `workers` processes (default: one
    per CPU core): a few seconds per kernel, about sixty of them."""
    jobs, listed = [], []
    for arch in archs:
        seen = set()
        for bucket in BUCKETS:
            for index, launch in enumerate(launches(TABLE[(arch, bucket)])):
                if launch.key() not in seen:
                    seen.add(launch.key())
                    jobs.append((arch, bucket, index))
                    listed.append((arch, bucket, launch))
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        results = [_compile_table_entry(job) for job in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
        with ctx.Pool(workers) as pool:
            results = pool.map(_compile_table_entry, jobs, chunksize=1)
    return [(arch, bucket, launch, c) for (arch, bucket, launch), c in zip(listed, results, strict=True)]
