"""WY step of the GDN-2 forward (`chunk_fwd.py` has the notation): per (chunk, head),

    A = (I + L)^{-1} from the diagonal inverses the scores kernel left,  Kb = A (B K e^Gamma),
    Ut = A (W V),  and the decayed operands of the state pass Qg, Ke, e^{gamma_C}.

All chunks in parallel.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gdn2_kernels.common.tl_helpers import dot_prec, load_lower_blocks, load_raw, load_raw_cols


@triton.jit
def _wy_inverse(L, A, ch, C: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr, STORE_A: tl.constexpr):
    """A = (I + L)^{-1} of one chunk, returned [C, C] and, with STORE_A (for the backward), stored.

    The scores kernel left the diagonal blocks inverted, A_bd; with M = A_bd N (N the blocks below the
    diagonal, M^4 = 0):  A = (I + M)^{-1} A_bd = (I - M)(I + M^2) A_bd.
    """
    o_c = tl.arange(0, C)
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_t = load_lower_blocks(L, ch, C, BC).to(tl.float32)  # [C, C]
    blk_i = (o_c // BC)[:, None]
    blk_j = (o_c // BC)[None, :]
    b_abd = tl.where(blk_i == blk_j, b_t, 0.0)
    b_m = dot_prec(b_abd, tl.where(blk_i > blk_j, b_t, 0.0), PREC)
    eye = tl.where(o_c[:, None] == o_c[None, :], 1.0, 0.0)
    b_A = dot_prec(dot_prec(eye - b_m, eye + dot_prec(b_m, b_m, PREC), PREC), b_abd, PREC)
    if STORE_A:
        tl.store(A + p_cc, b_A)
    return b_A


@triton.jit
def _load_block(
    ptr, rows, n, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr, PAD: tl.constexpr
):
    """Columns [col0, col0 + BD) in the tensor's dtype; with PAD the block may reach past column D (zeros)."""
    if PAD:
        x = load_raw_cols(ptr, rows, n, H, D, i_h, col0, BD)
    else:
        x = load_raw(ptr, rows, n, H, D, i_h, col0, BD)
    return x


@triton.jit
def _store_block(ptr, x, mask, PAD: tl.constexpr):
    """Store x; with PAD only where `mask` holds (the block's columns inside the head), else unmasked."""
    if PAD:
        tl.store(ptr, x, mask=mask)
    else:
        tl.store(ptr, x)


@triton.jit
def _wy_key_block(
    q, k, g, b, b_A, kb, qg, ke, eg, b_rk, b_rq, ch, n, i_h, col0,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
    LOADS_FIRST: tl.constexpr, PAD: tl.constexpr,
):  # fmt: skip
    """Columns [col0, col0 + BK) of Kb = A (B K e^Gamma), Qg, Ke and e^{gamma_C}; q, k, g, b point at the
    chunk. With LOADS_FIRST all four tiles are loaded before the first store: loads and stores keep their
    program order (the compiler cannot rule out aliasing), so a load after a store waits for its own trip to
    memory. PAD: the block reaches past column K (K < BK); those columns load as zeros and are not stored."""
    o_c = tl.arange(0, C)
    o_k = col0 + tl.arange(0, BK)
    m_k = o_k < K
    b_g = _load_block(g, o_c, n, H, K, i_h, col0, BK, PAD).to(tl.float32)  # [C, BK], 0 on padding rows
    if LOADS_FIRST:
        b_kr = _load_block(k, o_c, n, H, K, i_h, col0, BK, PAD)
        b_br = _load_block(b, o_c, n, H, K, i_h, col0, BK, PAD)
        b_qr = _load_block(q, o_c, n, H, K, i_h, col0, BK, PAD)
    b_gam = tl.cumsum(b_g, 0)  # flat on padding rows
    b_gC = tl.sum(b_g, 0)  # [BK]: gamma of the last row
    _store_block(eg + ch * K + o_k, tl.exp(b_gC), m_k, PAD)
    p_ck = (ch * C + o_c)[:, None] * K + o_k[None, :]
    if not LOADS_FIRST:
        b_kr = _load_block(k, o_c, n, H, K, i_h, col0, BK, PAD)
    b_kn = b_kr.to(tl.float32) * b_rk[:, None]
    _store_block(ke + p_ck, (b_kn * tl.exp(b_gC[None, :] - b_gam)).to(ke.dtype.element_ty), m_k[None, :], PAD)
    b_e = tl.exp(b_gam)
    if not LOADS_FIRST:
        b_br = _load_block(b, o_c, n, H, K, i_h, col0, BK, PAD)
    b_x = b_br.to(tl.float32) * b_kn * b_e
    _store_block(kb + p_ck, dot_prec(b_A, b_x, PREC).to(kb.dtype.element_ty), m_k[None, :], PAD)
    if not LOADS_FIRST:
        b_qr = _load_block(q, o_c, n, H, K, i_h, col0, BK, PAD)
    b_qg = b_qr.to(tl.float32) * b_rq[:, None] * b_e
    _store_block(qg + p_ck, b_qg.to(qg.dtype.element_ty), m_k[None, :], PAD)


@triton.jit
def _wy_value_block(
    v, w, b_A, ut, ch, n, i_h, col0, H: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BK: tl.constexpr,
    PREC: tl.constexpr, PAD: tl.constexpr,
):  # fmt: skip
    """Columns [col0, col0 + BK) of Ut = A (W V); v, w point at the chunk. PAD as in `_wy_key_block`."""
    o_c = tl.arange(0, C)
    o_v = col0 + tl.arange(0, BK)
    m_v = o_v < V
    b_w = _load_block(w, o_c, n, H, V, i_h, col0, BK, PAD).to(tl.float32)
    b_wv = b_w * _load_block(v, o_c, n, H, V, i_h, col0, BK, PAD).to(tl.float32)
    p_cv = (ch * C + o_c)[:, None] * V + o_v[None, :]
    _store_block(ut + p_cv, dot_prec(b_A, b_wv, PREC).to(ut.dtype.element_ty), m_v[None, :], PAD)


@triton.jit
def gdn2_fwd_kernel_wy(
    q, k, g, b, v, w, L, A, kb, ut, qg, ke, eg, rk, rq, chunk_bos, chunk_len, scale, c0,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    BK: tl.constexpr, PREC: tl.constexpr, INVERT: tl.constexpr, STORE_A: tl.constexpr,
    LOADS_FIRST: tl.constexpr, PAD: tl.constexpr,
):  # fmt: skip
    """A = (I + L)^{-1} (stored with STORE_A; with INVERT off, read from A instead), Kb = A (B K e^Gamma),
    Ut = A (W V), Qg, Ke, e^{gamma_C}. The inverse norms rk, rq come from the scores kernel. LOADS_FIRST:
    each key block's tiles are loaded before its stores (see `_wy_key_block`). PAD: K or V is not a multiple
    of BK (heads narrower than the block, `chunk_fwd.wy_block`); columns past the head are masked."""
    i_c, i_h = tl.program_id(0) + c0, tl.program_id(1)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    v, w = v + bos * H * V, w + bos * H * V
    ch = (i_c * H + i_h).to(tl.int64)
    o_c = tl.arange(0, C)
    if INVERT:
        b_A = _wy_inverse(L, A, ch, C, BC, PREC, STORE_A)
    else:
        b_A = tl.load(A + (ch * C + o_c)[:, None] * C + o_c[None, :])
    b_rk = tl.load(rk + ch * C + o_c)  # [C]
    b_rq = tl.load(rq + ch * C + o_c) * scale
    for kb_ in tl.static_range((K + BK - 1) // BK):
        _wy_key_block(q, k, g, b, b_A, kb, qg, ke, eg, b_rk, b_rq, ch, n, i_h, kb_ * BK, H, K, C, BK, PREC,
                      LOADS_FIRST, PAD)  # fmt: skip
    for vb in tl.static_range((V + BK - 1) // BK):
        _wy_value_block(v, w, b_A, ut, ch, n, i_h, vb * BK, H, V, C, BK, PREC, PAD)
