"""Shared memory, registers and spills of the forward kernels compiled for sm_90 (H100/H200), on a machine
without a GPU: what decides how many programs fit on an SM, checked before spending device time.

Compile with the Triton version of the GPU machine (3.6 there; others pipeline differently):

    pip install --no-deps --target /tmp/t36 triton==3.6.0
    PYTHONPATH=/tmp/t36:. python bench/kernels_sm90.py

Pointer arguments get the 16-byte divisibility the launcher gives real tensors; without it there are no
async copies and the shared-memory sizes are wrong. With it, the sizes match the GPU's to the byte (state
pass: 182272 B at V blocks of 16, 212992 B at 64, as `bench/kernels_overlap.py` printed on the H200).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from gdn2_kernels.gdn2 import chunk_fwd as cf

TARGET = GPUTarget("cuda", 90, 32)
BF16_ARGS = {"q", "k", "b", "v", "w", "P", "L", "kb", "ut", "qg", "ke", "o"}
INT_ARGS = {"chunk_bos", "chunk_len", "seq_chunks"}
SHAPE = dict(H=16, K=128, C=64, BC=16)


def compile_sm90(
    fn,
    constexprs: dict,
    num_warps: int,
    num_stages: int = 3,
    none_args: tuple[str, ...] = (),
    maxnreg: int | None = None,
):
    """`fn` compiled for sm_90 with these constexprs; `none_args` are pointer arguments passed as None;
    `maxnreg` caps its registers as the launch option of that name does."""
    names = fn.arg_names
    consts = {**constexprs, **{name: None for name in none_args}}
    sig = {}
    for name in names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in BF16_ARGS:
            sig[name] = "*bf16"
        elif name in INT_ARGS:
            sig[name] = "*i32"
        elif name == "scale":
            sig[name] = "fp32"
        elif name == "c0":
            sig[name] = "i32"
        else:
            sig[name] = "*fp32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if sig[name].startswith("*")}
    src = ASTSource(
        fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in consts.items()}, attrs=attrs
    )
    options = {"num_warps": num_warps, "num_stages": num_stages}
    if maxnreg is not None:
        options["maxnreg"] = maxnreg
    return triton.compile(src, target=TARGET, options=options)


def ptxas_report(kernel) -> str:
    """Registers and spills from the ptxas bundled with Triton."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as fh:
        fh.write(kernel.asm["ptx"])
    out = subprocess.run(
        [ptxas, "-v", "--gpu-name", "sm_90a", fh.name, "-o", os.devnull], capture_output=True, text=True
    )
    os.unlink(fh.name)
    lines = [
        ln.split("info    : ")[-1].strip() for ln in out.stderr.splitlines() if "spill" in ln or "Used" in ln
    ]
    return "; ".join(lines)


def main() -> None:
    print(f"triton {triton.__version__}, sm_90")
    prec = dict(PREC=cf.SCORES_PRECISION)
    rows = [
        (
            "scores",
            cf.gdn2_fwd_kernel_scores,
            dict(**SHAPE, L2NORM=True, SPAN=cf.SPAN, EXACT_BK=32, **prec),
            cf.SCORES_WARPS,
            (),
            cf.SCORES_MAXNREG,
        ),
        (
            "wy",
            cf.gdn2_fwd_kernel_wy,
            dict(
                **SHAPE,
                V=128,
                BK=cf.WY_BK,
                PREC=cf.WY_PRECISION,
                INVERT=True,
                STORE_A=False,
                LOADS_FIRST=cf.WY_LOADS_FIRST,
            ),
            cf.WY_WARPS,
            ("A",),
            cf.WY_MAXNREG,
        ),
    ]
    state_consts = dict(**SHAPE, V=128, HAS_H0=True, STORE_HT=True, STORE_H=False, STORE_O=True)
    for bv, prefetch in ((16, False), (16, True), (64, False), (64, True)):
        rows.append(
            (
                f"state_o, V blocks of {bv}" + (", Ut prefetched" if prefetch else ""),
                cf.gdn2_fwd_kernel_state_o,
                dict(**state_consts, BV=bv, UT_PREFETCH=prefetch),
                cf.STATE_WARPS,
                ("h",),
                None,
            )
        )
    for name, fn, consts, warps, none_args, maxnreg in rows:
        stages = cf.STATE_STAGES if fn is cf.gdn2_fwd_kernel_state_o else 3
        kernel = compile_sm90(fn, consts, warps, stages, none_args, maxnreg)
        print(f"{name}: {warps} warps, {kernel.metadata.shared} B shared; {ptxas_report(kernel)}")


if __name__ == "__main__":
    main()
