"""Inter-chunk state pass of the GDN-2 forward (`chunk_fwd.py` has the notation): the only sequential step.

One program per (V block, head, sequence) keeps its [K, V block] slice of the state in registers, walks
the sequence's chunks and writes O directly, so per-chunk states never touch memory (except for the
backward's recompute, which stores them instead of O):

    U = Ut - Kb S,   O = Qg S + P U,   S' = Diag(e^{gamma_C}) S + Ke^T U
"""

from __future__ import annotations

import triton
import triton.language as tl

from gdn2_kernels.common.tl_helpers import load_lower_blocks


@triton.jit
def gdn2_fwd_kernel_state_o(
    kb, ut, qg, ke, eg, P, o, h0, ht, h, chunk_bos, chunk_len, seq_chunks,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_H: tl.constexpr, STORE_O: tl.constexpr,
    UT_PREFETCH: tl.constexpr,
):  # fmt: skip
    """The state pass (step 3). With UT_PREFETCH the next chunk's Ut is loaded into registers one step
    ahead instead of through the pipeliner's shared-memory stages (16 KB less at V blocks of 64)."""
    i_v, i_h, i_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_k = tl.arange(0, K)
    o_c = tl.arange(0, C)
    o_v = i_v * BV + tl.arange(0, BV)
    p_s = ((i_n * H + i_h) * K + o_k).to(tl.int64)[:, None] * V + o_v[None, :]
    b_s = tl.zeros([K, BV], dtype=tl.float32)  # [K, BV]
    if HAS_H0:
        b_s += tl.load(h0 + p_s).to(tl.float32)
    c_lo = tl.load(seq_chunks + i_n)
    c_hi = tl.load(seq_chunks + i_n + 1)
    if UT_PREFETCH:
        p_ut = ut + o_c[:, None] * V + o_v[None, :]  # + the chunk's offset
        c_first = tl.where(c_hi > c_lo, c_lo, 0)  # an empty sequence loads chunk 0 and never reads it
        b_ut_next = tl.load(p_ut + (c_first * H + i_h).to(tl.int64) * C * V)
    for i_c in range(c_lo, c_hi):
        ch = (i_c * H + i_h).to(tl.int64)
        p_ck = (ch * C + o_c)[:, None] * K + o_k[None, :]
        b_kb = tl.load(kb + p_ck)  # [C, K]
        b_ke = tl.load(ke + p_ck)  # [C, K]
        if UT_PREFETCH:
            b_ut = b_ut_next.to(tl.float32)
            b_ut_next = tl.load(p_ut + (tl.minimum(i_c + 1, c_hi - 1) * H + i_h).to(tl.int64) * C * V)
        else:
            b_ut = tl.load(ut + (ch * C + o_c)[:, None] * V + o_v[None, :]).to(tl.float32)  # [C, BV]
        b_eg = tl.load(eg + ch * K + o_k)  # [K]
        if STORE_H:
            tl.store(h + (ch * K + o_k)[:, None] * V + o_v[None, :], b_s.to(h.dtype.element_ty))
        b_sl = b_s.to(b_kb.dtype)
        b_u = b_ut - tl.dot(b_kb, b_sl)  # [C, BV]
        b_ul = b_u.to(b_kb.dtype)
        if STORE_O:
            b_qg = tl.load(qg + p_ck)  # [C, K]
            b_p = load_lower_blocks(P, ch, C, BC)  # [C, C]
            b_o = tl.dot(b_qg, b_sl) + tl.dot(b_p.to(b_kb.dtype), b_ul)  # [C, BV]
            bos = tl.load(chunk_bos + i_c).to(tl.int64)
            n = tl.load(chunk_len + i_c)
            p_o = o + ((bos + o_c) * H + i_h)[:, None] * V + o_v[None, :]
            tl.store(p_o, b_o.to(o.dtype.element_ty), mask=(o_c < n)[:, None])
        b_s = b_s * b_eg[:, None] + tl.dot(tl.trans(b_ke), b_ul)
    if STORE_HT:
        tl.store(ht + p_s, b_s)
