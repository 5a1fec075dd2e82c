"""Launch settings of the GDN-2 kernels: one frozen row per (GPU architecture, shape bucket).

Every launch decision that is a measured choice (warps, blocks, pipeline stages, register caps, operand
precision, the segmented schedule of one long sequence) lives in a `Tuning` row; the kernels' modules hold
no switches. Callers look a row up with `tuning_for(...)`, or pass their own (`dataclasses.replace` of a
looked-up row) to `chunk_gdn2(..., tuning=row)`, which is how tests and benchmarks try variants.

Architectures: "sm_80" (A100, 163 KB of shared memory per block), "sm_89" (L4, RTX 4090: 99 KB),
"sm_90" (H100, H200: 227 KB), and "interpreter" (the Triton interpreter on CPU, which has no bfloat16).
A GPU of another architecture takes a row whose shared-memory budget it has (`arch_for`). Why each
value: gdn2_kernels/NOTES.md ("Tuning table"); registers, spills and shared memory of every row per
target: bench/results/kernels.md ("Compile report").

Shape buckets (`shape_bucket`) sort a call by how many state-pass programs its sequences give the card:
"long" (one sequence of at least LONG_CHUNKS chunks: the segmented, overlapped state pass), "wide"
(sequences x heads >= 128), "medium" (>= 64), "narrow" (fewer).

Adding a row: measure it (`python -m gdn2_kernels.autotune --shape BxT [--backward | --decode]` on that
GPU prints one), add it to TABLE under its (arch, bucket) key (a new architecture also needs its
SHARED_LIMIT and an entry in ARCHS), then run `pytest tests/kernels/test_compile_targets.py` (it compiles
every row for its target and fails if a kernel spills or outgrows the target's shared memory) and
`python bench/kernels/compile_report.py` to refresh the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

ARCHS = ("sm_80", "sm_89", "sm_90")
BUCKETS = ("narrow", "medium", "wide", "long")
# shared memory per block (opt-in maximum, bytes) of each architecture
SHARED_LIMIT = {"sm_80": 166912, "sm_89": 101376, "sm_90": 232448}
# chunks of one sequence from which its forward runs the segmented state pass
LONG_CHUNKS = 384


@dataclass(frozen=True)
class Tuning:
    """One row of launch settings. Precisions are `tl.dot` input precisions or "bf16" (operands rounded
    to bfloat16, fp32 accumulation); `*_maxnreg` caps a program's registers (None: the compiler's choice)."""

    # forward, intra-chunk scores (L and P per 16-row sub-chunk)
    scores_warps: int = 2
    scores_maxnreg: int | None = 168
    scores_precision: str = "bf16"
    scores_exact_levels_max_k: int = 64  # heads up to this K take `_exact_diag_levels`, wider the loop
    # forward WY (A = (I + L)^{-1}, Kb, Ut, decayed operands)
    wy_warps: int = 4
    wy_block_k: int = 64  # at least chunk_fwd.WY_MIN_BLOCK (64): narrower blocks miscompile (NOTES.md)
    wy_maxnreg: int | None = None
    wy_precision: str = "bf16"
    wy_loads_first: bool = True
    # forward state pass
    state_warps: int = 4
    state_stages: int = 3
    state_block_v: int = 16
    # storage of the state pass's per-chunk operands (bf16 halves its traffic; float32 for the interpreter)
    work_dtype: torch.dtype = torch.bfloat16
    # one long sequence: state pass in `segments` segments on a side stream, overlapping the next segment's
    # intra kernels; 1 turns it off
    segments: int = 1
    segment_min_chunks: int = 64
    segment_block_v: int = 64
    segment_shrink: float = 0.7
    segment_last_block_v: int = 16
    segment_stages: int = 3
    segment_ut_prefetch: bool = True
    # backward
    bwd_precision: str = "tf32x3"
    bwd_state_warps: int = 4
    bwd_state_stages: int = 3
    bwd_state_block_v: int = 16
    bwd_wy_warps: int = 8
    bwd_wy_stages: int = 3
    bwd_wy_block_v: int = 32
    bwd_wy_block_k: int = 64
    bwd_wy_finish_warps: int = 4
    bwd_scores_warps: int = 4
    bwd_scores_block_k: int = 128
    # decode (fused recurrent step)
    decode_block_v: int = 16
    decode_warps: int = 1

    def as_dict(self) -> dict:
        """The row as plain values (dtype by name), for JSON."""
        d = asdict(self)
        d["work_dtype"] = str(self.work_dtype).removeprefix("torch.")
        return d


def _buckets(base: Tuning, **per_bucket: dict) -> dict[str, Tuning]:
    """The four bucket rows of one architecture: `base` with each bucket's changes."""
    return {bucket: replace(base, **per_bucket.get(bucket, {})) for bucket in BUCKETS}


# per bucket: state-pass V blocks that give the card enough programs (few sequences: narrow blocks)
_BLOCKS = dict(
    narrow=dict(state_block_v=16, bwd_state_block_v=16, decode_block_v=16),
    medium=dict(state_block_v=32, bwd_state_block_v=32, decode_block_v=32),
    wide=dict(state_block_v=64, bwd_state_block_v=32, decode_block_v=32),
    long=dict(state_block_v=16, bwd_state_block_v=16, decode_block_v=16, segments=6),
)
# measured on one H200 (NOTES.md)
_SM90 = Tuning()
# sm_80 and sm_89 have no wgmma: products accumulate in registers (mma.sync), so the sm_90 settings spill
# there. Stepped down by the compile report (bench/results/kernels.md), to no spills where a setting allows:
# the scores kernel uncapped (221 registers; the cap was an H200 occupancy trade), the backward's key-side
# WY on 32 key columns in one stage, its score gradients at 8 warps, the state pass at V blocks of 32 at
# most (64 spills 1.2 KB), without the Ut prefetch, and the reverse state pass at 8 warps for V blocks of 32
_MMA = replace(
    _SM90,
    scores_maxnreg=None,
    segment_block_v=32,
    segment_ut_prefetch=False,
    bwd_wy_block_k=32,
    bwd_wy_stages=1,
    bwd_scores_warps=8,
    scores_exact_levels_max_k=0,
)
_BLOCKS_MMA = dict(
    narrow=_BLOCKS["narrow"],
    medium=dict(_BLOCKS["medium"], bwd_state_warps=8, decode_block_v=16),
    wide=dict(_BLOCKS["wide"], state_block_v=32, bwd_state_warps=8, decode_block_v=16),
    long=_BLOCKS["long"],
)
# A100, 163 KB of shared memory: three stages of the state pass fit at V blocks of 32 (106 KB)
_SM80 = _MMA
# L4 / RTX 4090, 99 KB: two stages of the forward state pass (61 KB at V blocks of 32; three need 106 KB)
_SM89 = replace(_MMA, state_stages=2, segment_stages=2)
# the interpreter: float32 everywhere (no bfloat16 there), exact products
_INTERP = replace(
    _SM90, work_dtype=torch.float32, scores_precision="ieee", wy_precision="ieee", bwd_precision="ieee"
)

TABLE: dict[tuple[str, str], Tuning] = {
    **{("sm_90", b): row for b, row in _buckets(_SM90, **_BLOCKS).items()},
    **{("sm_80", b): row for b, row in _buckets(_SM80, **_BLOCKS_MMA).items()},
    **{("sm_89", b): row for b, row in _buckets(_SM89, **_BLOCKS_MMA).items()},
    **{("interpreter", b): row for b, row in _buckets(_INTERP, **_BLOCKS).items()},
}


def shape_bucket(num_seqs: int, num_chunks: int, heads: int) -> str:
    """The bucket of a call over `num_seqs` sequences, `num_chunks` chunks in all, `heads` heads."""
    if num_seqs == 1 and num_chunks >= LONG_CHUNKS:
        return "long"
    programs = num_seqs * heads
    return "wide" if programs >= 128 else ("medium" if programs >= 64 else "narrow")


def arch_for(capability: tuple[int, int], shared_bytes: int | None = None) -> str:
    """The table architecture for a GPU of this compute capability and shared memory per block. A row only
    sets warps, blocks and stages (the kernels compile for the GPU itself), so what must match is the shared
    memory: among the rows whose budget the GPU has, the newest architecture not newer than it, else the
    largest budget (sm_86 and sm_120, with 99 KB, take sm_89's row)."""
    cap = capability[0] * 10 + capability[1]
    if cap < 80:
        raise ValueError(f"no GDN-2 tuning row for sm_{cap}: the kernels need sm_80 or newer")
    fits = [a for a in ARCHS if shared_bytes is None or SHARED_LIMIT[a] <= shared_bytes]
    if not fits:
        raise ValueError(
            f"no GDN-2 tuning row fits sm_{cap} with {shared_bytes} B of shared memory per block"
        )
    older = [a for a in fits if int(a[3:]) <= cap]
    if older:
        return max(older, key=lambda a: int(a[3:]))
    return max(fits, key=lambda a: SHARED_LIMIT[a])


_DEVICE_ARCH: dict = {}


def device_arch(device: torch.device) -> str:
    """The table architecture of `device`, "interpreter" off CUDA (the Triton interpreter's tensors)."""
    if device.type != "cuda":
        return "interpreter"
    if device not in _DEVICE_ARCH:
        props = torch.cuda.get_device_properties(device)
        shared = getattr(props, "shared_memory_per_block_optin", None)
        _DEVICE_ARCH[device] = arch_for((props.major, props.minor), shared)
    return _DEVICE_ARCH[device]


def lookup(arch: str, bucket: str) -> Tuning:
    """The row of (arch, bucket); a clear error naming the known keys otherwise."""
    try:
        return TABLE[(arch, bucket)]
    except KeyError:
        raise KeyError(f"no tuning row for ({arch!r}, {bucket!r}); rows: {sorted(TABLE)}") from None


def tuning_for(device: torch.device, num_seqs: int, num_chunks: int, heads: int) -> Tuning:
    """The row for a call on `device` over this shape."""
    return lookup(device_arch(device), shape_bucket(num_seqs, num_chunks, heads))
