"""Triton backward of the chunkwise GDN-2 (forward notation of `chunk_fwd.py`).

Per chunk, with S the state entering it and S' the one leaving it:

    U = Ut - Kb S,   O = Qg S + P U,   S' = Diag(eg) S + Ke^T U

Steps (one launch each; the forward's scores and WY steps are recomputed first, and its state pass
is rerun to store every chunk's entering state):
  1. `state`:   reverse pass over chunks:  dU = P^T dO + Ke dS',  dS = eg*dS' + Qg^T dO - Kb^T dU.
                Stores dS' per chunk and dU; returns dS for the initial state.
  2. `wy`:      per chunk: dKb, dQg, dP, dKe, d eg from S, dS', dO, dU; then through A = (I + L)^{-1}:
                dX = A^T dKb, d(WV) = A^T dU (-> dv, dw), dL = -A^T (dKb X^T + dU (WV)^T) A^T.
                Partial grads of normalised q, k, of b and of gamma go to per-token buffers.
  3. `scores`:  per (chunk, sub-chunk): the decayed pairwise products of dL and dP, on the row side
                (d(b k), dq) and the column side (dk), anchored like the forward so exponents stay bounded;
                adds gamma's share (x dx - k dk), then undoes the L2 normalisation.
  4. `gate`:    dg = reverse cumulative sum of d gamma within each chunk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.common.chunks import ChunkTable
from kernels.gdn2.chunk_fwd import (
    SPAN,
    _dot,
    _inv_norms,
    _l2norm_rows,
    _load_rows,
    _load_tile,
    chunk_gdn2_fwd,
    launch_pipelined,
)

# the score gradients sum terms that cancel under strong decay: tf32 alone measured dg 2.2e-2 off there
BWD_DOT_PRECISION = "tf32x3"
# pipelining depth of the reverse state pass (as in the forward: the next chunk loads during this one)
BWD_STATE_STAGES = 3
# bwd_wy keeps five fp32 [C, K] / [C, C] accumulators live across its V loop (255 registers at 8 warps): more
# warps spread them thinner; the probe A/Bs these against the measured defaults
BWD_WY_WARPS = 8
BWD_WY_BV = 32
BWD_SCORES_WARPS = 8
# "fused": one bwd_wy program per (chunk, head) (measured, the default); "split": three kernels (V side and U;
# one program per 64 key columns; dL), each with a fraction of the accumulators (not yet timed on a GPU)
BWD_WY_LAYOUT = "fused"
BWD_WY_BK = 64  # key columns per program of the split layout


@triton.jit
def gdn2_bwd_kernel_state(
    kb, qg, ke, eg, P, do, dht, dh0, dh, du, chunk_bos, chunk_len, seq_chunks,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr,
    HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
):  # fmt: skip
    i_v, i_h, i_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_k = tl.arange(0, K)
    o_c = tl.arange(0, C)
    o_v = i_v * BV + tl.arange(0, BV)
    p_s = ((i_n * H + i_h) * K + o_k).to(tl.int64)[:, None] * V + o_v[None, :]
    b_ds = tl.zeros([K, BV], dtype=tl.float32)
    if HAS_DHT:
        b_ds += tl.load(dht + p_s)
    c_lo = tl.load(seq_chunks + i_n)
    c_hi = tl.load(seq_chunks + i_n + 1)
    for i in range(c_hi - c_lo):
        i_c = c_hi - 1 - i
        ch = (i_c * H + i_h).to(tl.int64)
        p_ck = (ch * C + o_c)[:, None] * K + o_k[None, :]
        b_kb = tl.load(kb + p_ck)  # [C, K]
        b_qg = tl.load(qg + p_ck)  # [C, K]
        b_ke = tl.load(ke + p_ck)  # [C, K]
        b_p = tl.load(P + (ch * C + o_c)[:, None] * C + o_c[None, :]).to(b_kb.dtype)  # [C, C]
        b_eg = tl.load(eg + ch * K + o_k)  # [K]
        bos = tl.load(chunk_bos + i_c).to(tl.int64)
        n = tl.load(chunk_len + i_c)
        p_do = do + ((bos + o_c) * H + i_h)[:, None] * V + o_v[None, :]
        b_do = tl.load(p_do, mask=(o_c < n)[:, None], other=0.0).to(b_kb.dtype)  # [C, BV]
        tl.store(dh + (ch * K + o_k)[:, None] * V + o_v[None, :], b_ds)
        b_du = tl.dot(tl.trans(b_p), b_do) + tl.dot(b_ke, b_ds.to(b_kb.dtype))  # [C, BV]
        tl.store(du + (ch * C + o_c)[:, None] * V + o_v[None, :], b_du)
        b_ds = (
            b_ds * b_eg[:, None] + tl.dot(tl.trans(b_qg), b_do) - tl.dot(tl.trans(b_kb), b_du.to(b_kb.dtype))
        )
    if STORE_DH0:
        tl.store(dh0 + p_s, b_ds)


@triton.jit
def _store_token_grads(
    dq_acc, dk_acc, db_acc, dgam, b_dqg, b_dke, b_dx, b_deg, b_q, b_k, b_b, b_x, b_e, b_ec, b_gC,
    bos, n, i_h, o_k, scale, H: tl.constexpr, K: tl.constexpr, C: tl.constexpr,
):  # fmt: skip
    """The per-token partial grads of normalised q, k, of b and of gamma in columns o_k, from the chunk's
    dQg, dKe, dX and d eg (the last step of the backward WY, fused or split)."""
    o_c = tl.arange(0, C)
    b_ke = b_k * b_ec
    b_dgam = b_dqg * b_q * b_e * scale - b_dke * b_ke + b_dx * b_x
    # gamma_C is the last row's gamma (padding rows have g = 0): its grad lands on the last valid row
    b_dgC = tl.sum(b_dke * b_ke, 0) + b_deg * tl.exp(b_gC)
    b_dgam += tl.where((o_c == n - 1)[:, None], b_dgC[None, :], 0.0)
    p_tk = ((bos + o_c) * H + i_h).to(tl.int64)[:, None] * K + o_k[None, :]
    m_tk = (o_c < n)[:, None]
    tl.store(dq_acc + p_tk, b_dqg * b_e * scale, mask=m_tk)
    tl.store(dk_acc + p_tk, b_dke * b_ec + b_dx * b_b * b_e, mask=m_tk)
    tl.store(db_acc + p_tk, b_dx * b_k * b_e, mask=m_tk)
    tl.store(dgam + p_tk, b_dgam, mask=m_tk)


@triton.jit
def gdn2_bwd_kernel_wy(
    q, k, g, b, v, w, h, dh, du, ut, kb, do, A, dP, dq_acc, dk_acc, db_acc, dgam, dv, dw,
    chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr,
    L2NORM: tl.constexpr,
):  # fmt: skip
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    v, w, do = v + bos * H * V, w + bos * H * V, do + bos * H * V
    dv, dw = dv + bos * H * V, dw + bos * H * V
    ch = (i_c * H + i_h).to(tl.int64)
    o_c = tl.arange(0, C)
    o_k = tl.arange(0, K)
    m_c = o_c < n
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_A = tl.load(A + p_cc)  # [C, C]
    b_kb = tl.load(kb + (ch * C + o_c)[:, None] * K + o_k[None, :]).to(tl.float32)  # [C, K]

    b_dkb = tl.zeros([C, K], dtype=tl.float32)
    b_dqg = tl.zeros([C, K], dtype=tl.float32)
    b_dke = tl.zeros([C, K], dtype=tl.float32)
    b_dp = tl.zeros([C, C], dtype=tl.float32)
    b_dA = tl.zeros([C, C], dtype=tl.float32)
    b_deg = tl.zeros([K], dtype=tl.float32)
    for i_v in range(V // BV):
        o_v = i_v * BV + tl.arange(0, BV)
        p_kv = (ch * K + o_k)[:, None] * V + o_v[None, :]
        b_s = tl.load(h + p_kv)  # [K, BV]
        b_dsn = tl.load(dh + p_kv)  # [K, BV]
        p_cv = (ch * C + o_c)[:, None] * V + o_v[None, :]
        b_du = tl.load(du + p_cv)  # [C, BV]
        b_u = tl.load(ut + p_cv).to(tl.float32) - tl.dot(b_kb, b_s)  # [C, BV]
        p_tv = (o_c * H + i_h)[:, None] * V + o_v[None, :]
        b_do = tl.load(do + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)  # [C, BV]
        b_dkb -= tl.dot(b_du, tl.trans(b_s))
        b_dqg += tl.dot(b_do, tl.trans(b_s))
        b_dp += tl.dot(b_do, tl.trans(b_u))
        b_dke += tl.dot(b_u, tl.trans(b_dsn))
        b_deg += tl.sum(b_dsn * b_s, 1)
        b_v = tl.load(v + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)
        b_w = tl.load(w + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)
        b_dA += tl.dot(b_du, tl.trans(b_w * b_v))
        # d(WV) = A^T dU
        b_dwv = tl.dot(tl.trans(b_A), b_du)  # [C, BV]
        tl.store(dv + p_tv, (b_dwv * b_w).to(dv.dtype.element_ty), mask=m_c[:, None])
        tl.store(dw + p_tv, (b_dwv * b_v).to(dw.dtype.element_ty), mask=m_c[:, None])

    b_g = _load_rows(g, o_c, n, H, K, i_h)  # [C, K]
    b_gam = tl.cumsum(b_g, 0)
    b_gC = tl.sum(b_g, 0)  # [K]
    b_e = tl.exp(b_gam)
    b_ec = tl.exp(b_gC[None, :] - b_gam)
    b_k = _l2norm_rows(_load_rows(k, o_c, n, H, K, i_h), L2NORM)
    b_q = _l2norm_rows(_load_rows(q, o_c, n, H, K, i_h), L2NORM)
    b_b = _load_rows(b, o_c, n, H, K, i_h)
    b_x = b_b * b_k * b_e  # [C, K]
    b_dA += tl.dot(b_dkb, tl.trans(b_x))
    b_dx = tl.dot(tl.trans(b_A), b_dkb)  # [C, K]
    b_dL = -tl.dot(
        tl.trans(b_A), tl.dot(b_dA, tl.trans(b_A), input_precision="tf32x3"), input_precision="tf32x3"
    )
    b_dL = tl.where(o_c[:, None] > o_c[None, :], b_dL, 0.0)
    b_dp = tl.where(o_c[:, None] >= o_c[None, :], b_dp, 0.0)
    tl.debug_barrier()
    tl.store(A + p_cc, b_dL)
    tl.store(dP + p_cc, b_dp)

    _store_token_grads(
        dq_acc, dk_acc, db_acc, dgam, b_dqg, b_dke, b_dx, b_deg, b_q, b_k, b_b, b_x, b_e, b_ec, b_gC,
        bos, n, i_h, o_k, scale, H, K, C,
    )  # fmt: skip


@triton.jit
def gdn2_bwd_kernel_wy_values(
    h, du, ut, kb, do, v, w, A, u, dP, dAv, dv, dw, chunk_bos, chunk_len,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Split `gdn2_bwd_kernel_wy`, part 1 of 3, per (chunk, head): U = Ut - Kb S (kept for part 2),
    dP = dO U^T, dU (WV)^T (the V side of dA), and d(WV) = A^T dU -> dv, dw."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    v, w, do = v + bos * H * V, w + bos * H * V, do + bos * H * V
    dv, dw = dv + bos * H * V, dw + bos * H * V
    ch = (i_c * H + i_h).to(tl.int64)
    o_c = tl.arange(0, C)
    o_k = tl.arange(0, K)
    m_c = o_c < n
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_A = tl.load(A + p_cc)  # [C, C]
    b_kb = tl.load(kb + (ch * C + o_c)[:, None] * K + o_k[None, :]).to(tl.float32)  # [C, K]
    b_dp = tl.zeros([C, C], dtype=tl.float32)
    b_dA = tl.zeros([C, C], dtype=tl.float32)
    for i_v in range(V // BV):
        o_v = i_v * BV + tl.arange(0, BV)
        b_s = tl.load(h + (ch * K + o_k)[:, None] * V + o_v[None, :])  # [K, BV]
        p_cv = (ch * C + o_c)[:, None] * V + o_v[None, :]
        b_du = tl.load(du + p_cv)  # [C, BV]
        b_u = tl.load(ut + p_cv).to(tl.float32) - tl.dot(b_kb, b_s)  # [C, BV]
        tl.store(u + p_cv, b_u)
        p_tv = (o_c * H + i_h)[:, None] * V + o_v[None, :]
        b_do = tl.load(do + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)  # [C, BV]
        b_dp += tl.dot(b_do, tl.trans(b_u))
        b_v = tl.load(v + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)
        b_w = tl.load(w + p_tv, mask=m_c[:, None], other=0.0).to(tl.float32)
        b_dA += tl.dot(b_du, tl.trans(b_w * b_v))
        b_dwv = tl.dot(tl.trans(b_A), b_du)  # [C, BV]
        tl.store(dv + p_tv, (b_dwv * b_w).to(dv.dtype.element_ty), mask=m_c[:, None])
        tl.store(dw + p_tv, (b_dwv * b_v).to(dw.dtype.element_ty), mask=m_c[:, None])
    tl.store(dP + p_cc, tl.where(o_c[:, None] >= o_c[None, :], b_dp, 0.0))
    tl.store(dAv + p_cc, b_dA)


@triton.jit
def gdn2_bwd_kernel_wy_keys(
    q, k, g, b, h, dh, du, u, do, A, dApart, dq_acc, dk_acc, db_acc, dgam, chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr, BK: tl.constexpr,
    L2NORM: tl.constexpr,
):  # fmt: skip
    """Part 2, per (chunk, head, block of BK key columns): dKb, dQg, dKe and d eg of its columns from S, dS',
    dU, U and dO; dX = A^T dKb; the per-token partial grads of q, k, b, gamma in its columns; and
    dKb X^T, this block's share of dA, into its slot of dApart."""
    i_c, i_h, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    do = do + bos * H * V
    ch = (i_c * H + i_h).to(tl.int64)
    o_c = tl.arange(0, C)
    col0 = i_k * BK
    o_k = col0 + tl.arange(0, BK)
    m_c = o_c < n
    b_dkb = tl.zeros([C, BK], dtype=tl.float32)
    b_dqg = tl.zeros([C, BK], dtype=tl.float32)
    b_dke = tl.zeros([C, BK], dtype=tl.float32)
    b_deg = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(V // BV):
        o_v = i_v * BV + tl.arange(0, BV)
        p_kv = (ch * K + o_k)[:, None] * V + o_v[None, :]
        b_s = tl.load(h + p_kv)  # [BK, BV]
        b_dsn = tl.load(dh + p_kv)  # [BK, BV]
        p_cv = (ch * C + o_c)[:, None] * V + o_v[None, :]
        b_du = tl.load(du + p_cv)  # [C, BV]
        b_u = tl.load(u + p_cv)  # [C, BV]
        b_do = tl.load(do + (o_c * H + i_h)[:, None] * V + o_v[None, :], mask=m_c[:, None], other=0.0)
        b_do = b_do.to(tl.float32)
        b_dkb -= tl.dot(b_du, tl.trans(b_s))
        b_dqg += tl.dot(b_do, tl.trans(b_s))
        b_dke += tl.dot(b_u, tl.trans(b_dsn))
        b_deg += tl.sum(b_dsn * b_s, 1)

    b_g = _load_tile(g, o_c, n, H, K, i_h, col0, BK)  # [C, BK]
    b_gam = tl.cumsum(b_g, 0)
    b_gC = tl.sum(b_g, 0)  # [BK]
    b_e = tl.exp(b_gam)
    b_ec = tl.exp(b_gC[None, :] - b_gam)
    b_k = _load_tile(k, o_c, n, H, K, i_h, col0, BK) * _inv_norms(k, o_c, n, H, K, i_h, BK, L2NORM)[:, None]
    b_q = _load_tile(q, o_c, n, H, K, i_h, col0, BK) * _inv_norms(q, o_c, n, H, K, i_h, BK, L2NORM)[:, None]
    b_b = _load_tile(b, o_c, n, H, K, i_h, col0, BK)
    b_x = b_b * b_k * b_e  # [C, BK]
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_A = tl.load(A + p_cc)  # [C, C]
    tl.store(
        dApart + i_k * (C * C) + (ch * (K // BK) * C + o_c)[:, None] * C + o_c[None, :],
        tl.dot(b_dkb, tl.trans(b_x)),
    )
    b_dx = tl.dot(tl.trans(b_A), b_dkb)  # [C, BK]
    _store_token_grads(
        dq_acc, dk_acc, db_acc, dgam, b_dqg, b_dke, b_dx, b_deg, b_q, b_k, b_b, b_x, b_e, b_ec, b_gC,
        bos, n, i_h, o_k, scale, H, K, C,
    )  # fmt: skip


@triton.jit
def gdn2_bwd_kernel_wy_finish(A, dAv, dApart, H: tl.constexpr, C: tl.constexpr, NKB: tl.constexpr):
    """Part 3, per (chunk, head): dA = dU (WV)^T + the key blocks' dKb X^T, then dL = -A^T dA A^T
    (strictly lower) in place of A."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    ch = (i_c * H + i_h).to(tl.int64)
    o_c = tl.arange(0, C)
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_A = tl.load(A + p_cc)
    b_dA = tl.load(dAv + p_cc)
    for i_k in tl.static_range(NKB):
        b_dA += tl.load(dApart + i_k * (C * C) + (ch * NKB * C + o_c)[:, None] * C + o_c[None, :])
    b_dL = -tl.dot(
        tl.trans(b_A), tl.dot(b_dA, tl.trans(b_A), input_precision="tf32x3"), input_precision="tf32x3"
    )
    tl.debug_barrier()
    tl.store(A + p_cc, tl.where(o_c[:, None] > o_c[None, :], b_dL, 0.0))


@triton.jit
def gdn2_bwd_kernel_scores(
    q, k, g, b, dL, dP, dq_acc, dk_acc, db_acc, dgam, dq, dk, db, chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, L2NORM: tl.constexpr,
    SPAN: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    i_c, i_s, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    ch = (i_c * H + i_h).to(tl.int64)
    row0 = i_s * BC
    o_r = tl.arange(0, BC)
    o_c = tl.arange(0, C)
    rows = row0 + o_r

    # whole chunk: gamma, normalised q and k, b*k
    b_gam_all = tl.cumsum(_load_rows(g, o_c, n, H, K, i_h), 0)  # [C, K]
    b_k_all = _l2norm_rows(_load_rows(k, o_c, n, H, K, i_h), L2NORM)
    b_q_all = _l2norm_rows(_load_rows(q, o_c, n, H, K, i_h), L2NORM)
    b_bk_all = _load_rows(b, o_c, n, H, K, i_h) * b_k_all
    # this sub-chunk
    b_qraw = _load_rows(q, rows, n, H, K, i_h)
    b_kraw = _load_rows(k, rows, n, H, K, i_h)
    b_q = _l2norm_rows(b_qraw, L2NORM)  # [BC, K]
    b_k = _l2norm_rows(b_kraw, L2NORM)
    b_b = _load_rows(b, rows, n, H, K, i_h)
    b_bk = b_b * b_k
    b_g = _load_rows(g, rows, n, H, K, i_h)
    b_carry = tl.sum(tl.where((o_c < row0)[:, None], _load_rows(g, o_c, n, H, K, i_h), 0.0), 0)
    b_gam = tl.cumsum(b_g, 0) + b_carry[None, :]  # [BC, K]

    p_rows = (ch * C + rows)[:, None] * C + o_c[None, :]  # rows of dL, dP: [BC, C]
    p_cols = (ch * C + o_c)[:, None] * C + rows[None, :]  # columns of dL, dP: [C, BC]
    b_dL_r = tl.load(dL + p_rows)
    # P carries the scale: fold it into dP once
    b_dP_r = tl.load(dP + p_rows) * scale
    b_dL_c = tl.load(dL + p_cols)
    b_dP_c = tl.load(dP + p_cols) * scale

    # anchors: r = gamma of the sub-chunk's first row (row side), r2 = of its last row (column side).
    # When the sub-chunk decays by less than SPAN its own diagonal block rides along in the products
    # (factors up to e^SPAN); otherwise the products stop at the block and it takes exact differences.
    b_r = tl.sum(tl.where((o_r == 0)[:, None], b_gam, 0.0), 0)  # [K]
    b_r2 = tl.sum(tl.where((o_r == BC - 1)[:, None], b_gam, 0.0), 0)  # [K]
    b_span = tl.max(b_r - b_r2, 0)
    fast = b_span < SPAN
    # row side: columns up to the block (or before it)
    m_prev = o_c < tl.where(fast, row0 + BC, row0)
    b_y = tl.where(m_prev[:, None], b_k_all * tl.exp(tl.minimum(b_r[None, :] - b_gam_all, SPAN)), 0.0)
    b_er = tl.exp(b_gam - b_r[None, :])
    b_dbk = _dot(tl.where(m_prev[None, :], b_dL_r, 0.0), b_y, PREC) * b_er
    b_dqn = _dot(tl.where(m_prev[None, :], b_dP_r, 0.0), b_y, PREC) * b_er
    # column side: rows from the block (or after it)
    m_next = o_c >= tl.where(fast, row0, row0 + BC)
    b_z = tl.exp(tl.minimum(b_gam_all - b_r2[None, :], SPAN))
    b_zl = tl.where(m_next[:, None], b_bk_all * b_z, 0.0)  # [C, K]
    b_zp = tl.where(m_next[:, None], b_q_all * b_z, 0.0)
    b_dkn = _dot(tl.trans(tl.where(m_next[:, None], b_dL_c, 0.0)), b_zl, PREC)
    b_dkn += _dot(tl.trans(tl.where(m_next[:, None], b_dP_c, 0.0)), b_zp, PREC)
    b_dkn *= tl.exp(b_r2[None, :] - b_gam)

    if b_span >= SPAN:
        # diagonal block, exact pairwise decays
        for j in range(BC):
            m_j = o_r == j
            m_jc = (o_c == row0 + j)[None, :]
            b_gj = tl.sum(tl.where(m_j[:, None], b_gam, 0.0), 0)  # [K]
            # row side: column j against rows i >= j
            b_kj = tl.sum(tl.where(m_j[:, None], b_k, 0.0), 0)
            m_low = o_r >= j
            b_ej = tl.exp(tl.where(m_low[:, None], b_gam - b_gj[None, :], 0.0))  # [BC, K]: e^{gam_i - gam_j}
            b_lcol = tl.where(o_r > j, tl.sum(tl.where(m_jc, b_dL_r, 0.0), 1), 0.0)  # [BC]: dL[i, j]
            b_pcol = tl.where(m_low, tl.sum(tl.where(m_jc, b_dP_r, 0.0), 1), 0.0)
            b_dbk += b_lcol[:, None] * b_ej * b_kj[None, :]
            b_dqn += b_pcol[:, None] * b_ej * b_kj[None, :]
            # column side: row j against columns i <= j
            b_bkj = tl.sum(tl.where(m_j[:, None], b_bk, 0.0), 0)
            b_qj = tl.sum(tl.where(m_j[:, None], b_q, 0.0), 0)
            m_up = o_r <= j
            b_fj = tl.exp(tl.where(m_up[:, None], b_gj[None, :] - b_gam, 0.0))  # [BC, K]: e^{gam_j - gam_i}
            m_jr = (o_c == row0 + j)[:, None]
            b_lrow = tl.where(o_r < j, tl.sum(tl.where(m_jr, b_dL_c, 0.0), 0), 0.0)  # [BC]: dL[j, i]
            b_prow = tl.where(m_up, tl.sum(tl.where(m_jr, b_dP_c, 0.0), 0), 0.0)
            b_dkn += b_fj * (b_lrow[:, None] * b_bkj[None, :] + b_prow[:, None] * b_qj[None, :])

    p_tk = ((bos + rows) * H + i_h).to(tl.int64)[:, None] * K + tl.arange(0, K)[None, :]
    m_tk = (rows < n)[:, None]
    b_dgam = tl.load(dgam + p_tk, mask=m_tk, other=0.0)
    b_dgam += b_bk * b_dbk + b_q * b_dqn - b_k * b_dkn
    tl.store(dgam + p_tk, b_dgam, mask=m_tk)
    b_dqn += tl.load(dq_acc + p_tk, mask=m_tk, other=0.0)
    b_dkn += tl.load(dk_acc + p_tk, mask=m_tk, other=0.0) + b_dbk * b_b
    b_db = tl.load(db_acc + p_tk, mask=m_tk, other=0.0) + b_dbk * b_k
    if L2NORM:
        # d x = (d xn - xn (xn . d xn)) / max(|x|, eps)
        b_nq = tl.maximum(tl.sqrt(tl.sum(b_qraw * b_qraw, 1)), 1e-6)[:, None]
        b_nk = tl.maximum(tl.sqrt(tl.sum(b_kraw * b_kraw, 1)), 1e-6)[:, None]
        b_dqn = (b_dqn - b_q * tl.sum(b_q * b_dqn, 1)[:, None]) / b_nq
        b_dkn = (b_dkn - b_k * tl.sum(b_k * b_dkn, 1)[:, None]) / b_nk
    tl.store(dq + p_tk, b_dqn.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_tk, b_dkn.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(db + p_tk, b_db.to(db.dtype.element_ty), mask=m_tk)


@triton.jit
def gdn2_bwd_kernel_gate(dgam, dg, chunk_bos, chunk_len, H: tl.constexpr, K: tl.constexpr, C: tl.constexpr):
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    o_c = tl.arange(0, C)
    p = ((bos + o_c) * H + i_h)[:, None] * K + tl.arange(0, K)[None, :]
    m = (o_c < n)[:, None]
    b_d = tl.load(dgam + p, mask=m, other=0.0)  # [C, K]
    # dg_i = sum over i' >= i of d gamma_i'
    b_dg = tl.sum(b_d, 0)[None, :] - tl.cumsum(b_d, 0) + b_d
    tl.store(dg + p, b_dg, mask=m)


def chunk_gdn2_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    h0: torch.Tensor | None,
    *,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    scale: float,
    table: ChunkTable,
    l2norm_qk: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, ...]:
    """Flat [tokens, H, *] inputs and output grad; returns (dq, dk, dv, dg, db, dw, dh0 or None)."""
    Ttot, H, K = q.shape
    V = v.shape[-1]
    C, BC = chunk_size, 16
    NC, N = table.num_chunks, table.num_seqs
    dev = q.device
    _, _, it = chunk_gdn2_fwd(
        q, k, v, g, b, w, scale=scale, initial_state=h0, output_final_state=False, table=table,
        l2norm_qk=l2norm_qk, chunk_size=C, save_states=True,
    )  # fmt: skip
    dh = torch.empty(NC, H, K, V, device=dev, dtype=torch.float32)
    du = torch.empty(NC, H, C, V, device=dev, dtype=torch.float32)
    dh0 = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if h0 is not None else None
    BV = min(16 if N * H * V // 32 < 256 else 32, V)
    launch_pipelined(
        gdn2_bwd_kernel_state, (V // BV, H, N),
        it["kb"], it["qg"], it["ke"], it["eg"], it["P"], do, dht, dh0, dh, du,
        table.chunk_bos, table.chunk_len, table.seq_chunks,
        H=H, K=K, V=V, C=C, BV=BV, HAS_DHT=dht is not None, STORE_DH0=h0 is not None,
        num_warps=4, stages=BWD_STATE_STAGES,
    )  # fmt: skip
    acc = [torch.empty(Ttot, H, K, device=dev, dtype=torch.float32) for _ in range(4)]
    dq_acc, dk_acc, db_acc, dgam = acc
    dv = torch.empty_like(v)
    dw = torch.empty_like(w)
    dP = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
    BVW = min(BWD_WY_BV, V)
    if BWD_WY_LAYOUT == "split":
        BK = min(BWD_WY_BK, K)
        u = torch.empty(NC, H, C, V, device=dev, dtype=torch.float32)
        dAv = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
        dApart = torch.empty(NC, H, K // BK, C, C, device=dev, dtype=torch.float32)
        gdn2_bwd_kernel_wy_values[(NC, H)](
            it["h"], du, it["ut"], it["kb"], do, v, w, it["L"], u, dP, dAv, dv, dw,
            table.chunk_bos, table.chunk_len, H=H, K=K, V=V, C=C, BV=BVW, num_warps=BWD_WY_WARPS,
        )  # fmt: skip
        gdn2_bwd_kernel_wy_keys[(NC, H, K // BK)](
            q, k, g, b, it["h"], dh, du, u, do, it["L"], dApart, dq_acc, dk_acc, db_acc, dgam,
            table.chunk_bos, table.chunk_len, scale,
            H=H, K=K, V=V, C=C, BV=BVW, BK=BK, L2NORM=l2norm_qk, num_warps=BWD_WY_WARPS,
        )  # fmt: skip
        gdn2_bwd_kernel_wy_finish[(NC, H)](it["L"], dAv, dApart, H=H, C=C, NKB=K // BK, num_warps=4)
        del u, dAv, dApart
    else:
        gdn2_bwd_kernel_wy[(NC, H)](
            q, k, g, b, v, w, it["h"], dh, du, it["ut"], it["kb"], do, it["L"], dP,
            dq_acc, dk_acc, db_acc, dgam, dv, dw, table.chunk_bos, table.chunk_len, scale,
            H=H, K=K, V=V, C=C, BV=BVW, L2NORM=l2norm_qk, num_warps=BWD_WY_WARPS,
        )  # fmt: skip
    del dh, du
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    db = torch.empty_like(b)
    gdn2_bwd_kernel_scores[(NC, C // BC, H)](
        q, k, g, b, it["L"], dP, dq_acc, dk_acc, db_acc, dgam, dq, dk, db,
        table.chunk_bos, table.chunk_len, scale, H=H, K=K, C=C, BC=BC, L2NORM=l2norm_qk,
        SPAN=SPAN, PREC=BWD_DOT_PRECISION, num_warps=BWD_SCORES_WARPS,
    )  # fmt: skip
    dg = torch.empty_like(g)
    gdn2_bwd_kernel_gate[(NC, H)](dgam, dg, table.chunk_bos, table.chunk_len, H=H, K=K, C=C, num_warps=4)
    return dq, dk, dv, dg, db, dw, dh0
