"""Triton chunkwise forward of GDN-2 in the WY/UT form (DESIGN.md section 2): orchestration.

Within a chunk of C tokens (gamma = within-chunk cumsum of g, S0 the state entering it):

    L_ij = (b_i k_i e^{gamma_i}) . (k_j e^{-gamma_j})   j < i        A = (I + L)^{-1}
    P_ij = scale (q_i e^{gamma_i}) . (k_j e^{-gamma_j})  j <= i
    Kb = A (B K e^Gamma),   Ut = A (W V)                 U = Ut - Kb S0
    O  = (scale Q e^Gamma) S0 + P U
    S' = Diag(e^{gamma_C}) S0 + (K e^{gamma_C - Gamma})^T U

Steps (one launch each; 1 and 2 run over all chunks in parallel), one module each:
  1. `chunk_intra.py` scores (chunk, 16-row sub-chunk, head): rows of L and P, diagonal blocks of L
     stored inverted.
  2. `chunk_wy.py` (chunk, head): A, then Kb, Ut and the decayed operands Qg, Ke, e^{gamma_C}.
  3. `chunk_state.py` state pass: one program per (V block, head, sequence) walks the chunks and writes O.
     A single long sequence runs it in segments on a side stream, each overlapping the next segment's
     steps 1-2 on the SMs it leaves free.
Every launch setting comes from a `Tuning` row (`tuning.py`).
"""

from __future__ import annotations

import contextlib
import functools

import torch

from gdn2_kernels.common.chunks import ChunkTable
from gdn2_kernels.gdn2.chunk_intra import SPAN, gdn2_fwd_kernel_scores
from gdn2_kernels.gdn2.chunk_state import gdn2_fwd_kernel_state_o
from gdn2_kernels.gdn2.chunk_wy import gdn2_fwd_kernel_wy
from gdn2_kernels.gdn2.tuning import Tuning, tuning_for

# the last launched kernels by step, for register / spill reports (bench/kernels/kernels_probe.py)
LAST_COMPILED: dict = {}


class _SameStream:
    """Stand-in for a pair of CUDA streams off the GPU (the Triton interpreter): everything runs in order."""

    def wait_stream(self, other) -> None:
        pass


_SIDE_STREAMS: dict = {}


def _streams(dev: torch.device):
    """(the caller's stream, a high-priority side stream) on CUDA, for the overlapped state pass."""
    if dev.type != "cuda":
        return _SameStream(), _SameStream()
    if dev not in _SIDE_STREAMS:
        _SIDE_STREAMS[dev] = torch.cuda.Stream(dev, priority=-1)
    return torch.cuda.current_stream(dev), _SIDE_STREAMS[dev]


def _on(stream):
    """Context that makes `stream` current (nothing for the interpreter's stand-in)."""
    return contextlib.nullcontext() if isinstance(stream, _SameStream) else torch.cuda.stream(stream)


def segment_bounds(num_chunks: int, n_seg: int, shrink: float) -> list[int]:
    """Chunk boundaries [0, ..., num_chunks] of `n_seg` segments, each `shrink` times as long as the
    one before. The last segment's state pass runs alone on a few SMs, so a short last segment ends the call
    sooner; the first one's intra kernels overlap nothing either way."""
    weights = [shrink**i for i in range(n_seg)]
    cuts, acc = [0], 0.0
    for wgt in weights:
        acc += wgt
        cut = round(num_chunks * acc / sum(weights))
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts[-1] = num_chunks
    return cuts


# the WY kernel's products A @ X at bf16 with X narrower than 64 columns came out wrong on an H200 with
# Triton 3.6 (o off by 100 %, no fault reported; NOTES.md, "WY blocks under 64"): narrower heads pad their
# block to 64 columns instead
WY_MIN_BLOCK = 64


def wy_block(t: Tuning, K: int, V: int) -> tuple[int, bool]:
    """(columns per WY block, whether the last block reaches past K or V and is masked) for heads K, V."""
    bk = max(min(t.wy_block_k, K, V), WY_MIN_BLOCK)
    return bk, K % bk != 0 or V % bk != 0


def scores_exact_levels(t: Tuning, K: int) -> bool:
    """Whether heads of K take the scores kernel's exact diagonal by levels of products (else the loop)."""
    return t.scores_exact_levels_max_k >= K


def _reg_cap(maxnreg: int | None) -> dict:
    """Launch options capping a program's registers (none: the interpreter takes no such option)."""
    return {} if maxnreg is None else {"maxnreg": maxnreg}


@functools.lru_cache(maxsize=64)
def _device_bounds(cuts: tuple[int, ...], dev: torch.device) -> torch.Tensor:
    """`cuts` as a device int32 tensor, made once: a host-to-device copy per call would wait for the GPU."""
    return torch.tensor(cuts, device=dev, dtype=torch.int32)


def chunk_gdn2_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    *,
    scale: float,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    table: ChunkTable,
    l2norm_qk: bool,
    chunk_size: int = 64,
    save_states: bool = False,
    scores: tuple[torch.Tensor, ...] | None = None,
    keep_inverse: bool = False,
    tuning: Tuning | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Forward on flat [tokens, H, *] contiguous inputs; returns (o, final_state, intermediates).

    `save_states` is the backward's recompute: it stores every chunk's entering state in the
    intermediates and skips the output (o is None), which the backward does not read. `scores` is
    (A, P, rk, rq) of an earlier forward over the same inputs (the intermediates of those names): the
    scores step and the inversion are skipped. `keep_inverse` stores A in float32 for the backward; without
    it (inference) A is never written. `tuning`: the launch settings (None: the table's row for this
    device and shape).

    Steps: 1. L, P (scores)  2. A, Kb, Ut, Qg, Ke, e^{gamma_C} (wy)  3. state pass + output (state_o).
    The per-chunk operands read by the state pass are stored in the row's work dtype.
    """
    Ttot, H, K = q.shape
    V = v.shape[-1]
    C, BC = chunk_size, 16
    NC, N = table.num_chunks, table.num_seqs
    dev = q.device
    t = tuning if tuning is not None else tuning_for(dev, N, NC, H)
    work_dtype = t.work_dtype
    L = None
    if scores is None:
        # L and P only feed products whose operands are rounded to work_dtype anyway
        L = torch.empty(NC, H, C, C, device=dev, dtype=work_dtype)
        P = torch.empty(NC, H, C, C, device=dev, dtype=work_dtype)
        A = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32) if keep_inverse else None
        # 1 / |k|, 1 / |q| per token (ones without L2 norm), for WY and the backward
        rk = torch.empty(NC, H, C, device=dev, dtype=torch.float32)
        rq = torch.empty(NC, H, C, device=dev, dtype=torch.float32)
    else:
        A, P, rk, rq = scores
    kb = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    qg = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    ke = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    ut = torch.empty(NC, H, C, V, device=dev, dtype=work_dtype)
    eg = torch.empty(NC, H, K, device=dev, dtype=torch.float32)
    segmented = N == 1 and not save_states and t.segments > 1 and t.segment_min_chunks * t.segments <= NC
    n_seg = t.segments if segmented else 1
    BV = min(t.segment_block_v if segmented else t.state_block_v, V)
    o = None if save_states else torch.empty(Ttot, H, V, device=dev, dtype=v.dtype)
    ht = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if output_final_state else None
    h = torch.empty(NC, H, K, V, device=dev, dtype=torch.float32) if save_states else None

    wy_bk, wy_pad = wy_block(t, K, V)

    def intra(c0: int, c1: int) -> None:
        """Scores and WY of chunks [c0, c1)."""
        if scores is None:
            # chunk-major launch order (a chunk's sub-chunks next to each other ran slower)
            LAST_COMPILED["scores"] = gdn2_fwd_kernel_scores[(c1 - c0, C // BC, H)](
                q, k, g, b, L, P, rk, rq, table.chunk_bos, table.chunk_len, scale, c0,
                H=H, K=K, C=C, BC=BC, L2NORM=l2norm_qk, SPAN=SPAN, PREC=t.scores_precision,
                EXACT_BK=min(32, K), EXACT_LEVELS=scores_exact_levels(t, K), num_warps=t.scores_warps,
                **_reg_cap(t.scores_maxnreg),
            )  # fmt: skip
        LAST_COMPILED["wy"] = gdn2_fwd_kernel_wy[(c1 - c0, H)](
            q, k, g, b, v, w, L, A, kb, ut, qg, ke, eg, rk, rq, table.chunk_bos, table.chunk_len, scale, c0,
            H=H, K=K, V=V, C=C, BC=BC, BK=wy_bk, PREC=t.wy_precision, INVERT=scores is None,
            STORE_A=scores is None and keep_inverse, LOADS_FIRST=t.wy_loads_first, PAD=wy_pad,
            num_warps=t.wy_warps, **_reg_cap(t.wy_maxnreg),
        )  # fmt: skip

    def state(seq_chunks, h0, h_out, n_seqs: int, bv: int, stages: int) -> None:
        LAST_COMPILED["state_o"] = gdn2_fwd_kernel_state_o[(V // bv, H, n_seqs)](
            kb, ut, qg, ke, eg, P, o, h0, h_out, h, table.chunk_bos, table.chunk_len, seq_chunks,
            H=H, K=K, V=V, C=C, BC=BC, BV=bv, HAS_H0=h0 is not None, STORE_HT=h_out is not None,
            STORE_H=save_states, STORE_O=not save_states, UT_PREFETCH=segmented and t.segment_ut_prefetch,
            num_warps=t.state_warps, num_stages=stages,
        )  # fmt: skip

    inter = dict(A=A, P=P, kb=kb, ut=ut, qg=qg, ke=ke, eg=eg, h=h, rk=rk, rq=rq)
    if n_seg == 1:
        intra(0, NC)
        state(table.seq_chunks, initial_state, ht, N, BV, t.state_stages)
        return o, ht, inter
    # one long sequence: the state pass of segment s (a side stream, few programs) runs while scores and WY
    # of segment s + 1 fill the rest of the card
    cuts = segment_bounds(NC, n_seg, t.segment_shrink)
    bounds = _device_bounds(tuple(cuts), dev)
    main, side = _streams(dev)
    h_prev = initial_state
    for s_i in range(len(cuts) - 1):
        intra(cuts[s_i], cuts[s_i + 1])
        side.wait_stream(main)
        with _on(side):
            last = s_i == len(cuts) - 2
            h_next = ht if last else torch.empty(1, H, K, V, device=dev, dtype=torch.float32)
            # the last pass runs alone: narrow V blocks (more programs) shorten its chain
            bv = min(t.segment_last_block_v, V) if last else BV
            state(bounds[s_i : s_i + 2], h_prev, h_next, 1, bv, t.state_stages if last else t.segment_stages)
        h_prev = h_next
    main.wait_stream(side)
    return o, ht, inter
