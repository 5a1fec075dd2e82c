"""Triton backward of the chunkwise GDN-2 (forward notation of `chunk_fwd.py`).

Per chunk, with S the state entering it and S' the one leaving it:

    U = Ut - Kb S,   O = Qg S + P U,   S' = Diag(eg) S + Ke^T U

Steps (one launch each; the forward keeps A = (I + L)^{-1} and P, so only its WY products are rerun
first, and its state pass to store every chunk's entering state instead of the output):
  1. `state`:   reverse pass over chunks:  dU = P^T dO + Ke dS',  dS = eg*dS' + Qg^T dO - Kb^T dU.
                Stores dS' per chunk and dU; returns dS for the initial state.
  2. `wy`:      per chunk: dKb, dQg, dP, dKe, d eg from S, dS', dO, dU; then through A = (I + L)^{-1}:
                dX = A^T dKb, d(WV) = A^T dU (-> dv, dw), dL = -A^T (dKb X^T + dU (WV)^T) A^T.
                Three kernels: `wy_values` (U, dP, dv, dw and the V side of dA), `wy_keys` (one program
                per block of key columns: their grads and their share of dA), `wy_finish` (dL).
                Partial grads of normalised q, k, of b and of gamma go to per-token buffers.
  3. `scores`:  per (sub-chunk, chunk, block of key columns): the decayed pairwise products of dL and dP,
                on the row side (d(b k), dq) and the column side (dk), anchored like the forward so
                exponents stay bounded; adds gamma's share (x dx - k dk).
  4. `finish`:  dg = reverse cumulative sum of d gamma within each chunk; dq, dk through the L2 norm.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdn2_kernels.common.chunks import ChunkTable
from gdn2_kernels.common.tl_helpers import dot_prec, load_lower_blocks, load_tile
from gdn2_kernels.gdn2.chunk_fwd import LAST_COMPILED, chunk_gdn2_fwd
from gdn2_kernels.gdn2.chunk_intra import SPAN
from gdn2_kernels.gdn2.tuning import Tuning, tuning_for


@triton.jit
def gdn2_bwd_kernel_state(
    kb, qg, ke, eg, P, do, dht, dh0, dh, du, chunk_bos, chunk_len, seq_chunks,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, BV: tl.constexpr,
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
        b_p = load_lower_blocks(P, ch, C, BC).to(b_kb.dtype)  # [C, C]
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
    q, k, g, b, rq, rk, h, dh, du, u, do, A, dApart, dq_acc, dk_acc, db_acc, dgam, gam,
    chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Part 2, per (chunk, head, block of BK key columns): dKb, dQg, dKe and d eg of its columns from S, dS',
    dU, U and dO; dX = A^T dKb; the per-token partial grads of q, k, b, gamma in its columns; and
    dKb X^T, this block's share of dA, into its slot of dApart. Also stores gamma (the within-chunk cumsum
    of g) of its columns, which the score gradients read rather than re-sum g."""
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

    b_g = load_tile(g, o_c, n, H, K, i_h, col0, BK)  # [C, BK]
    b_gam = tl.cumsum(b_g, 0)
    tl.store(gam + ((bos + o_c) * H + i_h)[:, None] * K + o_k[None, :], b_gam, mask=m_c[:, None])
    b_gC = tl.sum(b_g, 0)  # [BK]
    b_e = tl.exp(b_gam)
    b_ec = tl.exp(b_gC[None, :] - b_gam)
    b_k = load_tile(k, o_c, n, H, K, i_h, col0, BK) * tl.load(rk + ch * C + o_c)[:, None]
    b_q = load_tile(q, o_c, n, H, K, i_h, col0, BK) * tl.load(rq + ch * C + o_c)[:, None]
    b_b = load_tile(b, o_c, n, H, K, i_h, col0, BK)
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
    (strictly lower) in place of dAv (A is the forward's, kept intact)."""
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
    tl.store(dAv + p_cc, tl.where(o_c[:, None] > o_c[None, :], b_dL, 0.0))


@triton.jit
def gdn2_bwd_kernel_scores(
    q, k, gam, b, rq, rk, dL, dP, dq_acc, dk_acc, db_acc, dgam, db, chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    SPAN: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Per (sub-chunk and block of BK key columns, chunk, head): the decayed pairwise products of dL and dP
    on the row side (d(b k), dq) and the column side (dk), anchored like the forward so every exponent is
    bounded; a sub-chunk that decays by more than SPAN takes exact pairwise differences on its diagonal
    block. Built from 16 x 16 blocks of dL and dP and [16, BK] tiles of the other sub-chunks, with
    gamma (stored by `wy_keys`) and the forward's inverse norms. Every product is per channel, so key
    columns split freely; the L2 normalisation needs whole rows and is undone in `gdn2_bwd_kernel_finish`."""
    # a chunk's sub-chunks and key blocks run next to each other, so the rows they share are still in L2
    i_sk, i_c, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_s = i_sk // (K // BK)
    col0 = (i_sk % (K // BK)) * BK
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, gam, b = q + bos * H * K, k + bos * H * K, gam + bos * H * K, b + bos * H * K
    ch = (i_c * H + i_h).to(tl.int64)
    o_r = tl.arange(0, BC)
    rows = i_s * BC + o_r
    b_q = load_tile(q, rows, n, H, K, i_h, col0, BK) * tl.load(rq + ch * C + rows)[:, None]
    b_k = load_tile(k, rows, n, H, K, i_h, col0, BK) * tl.load(rk + ch * C + rows)[:, None]
    b_b = load_tile(b, rows, n, H, K, i_h, col0, BK)
    b_bk = b_b * b_k
    # padding rows take the last valid row's gamma (no decay after the end), which keeps every anchor valid
    b_gam = load_tile(gam, tl.minimum(rows, n - 1), n, H, K, i_h, col0, BK)  # [BC, BK]
    b_r = tl.sum(tl.where((o_r == 0)[:, None], b_gam, 0.0), 0)  # [BK] row-side anchor: first row
    b_r2 = tl.sum(tl.where((o_r == BC - 1)[:, None], b_gam, 0.0), 0)  # [BK] column-side anchor: last row
    fast = tl.max(b_r - b_r2, 0) < SPAN
    p_ss = (ch * C + rows)[:, None] * C + rows[None, :]
    b_dL_ss = tl.load(dL + p_ss)  # [BC, BC] diagonal blocks; P carries the scale, folded into dP
    b_dP_ss = tl.load(dP + p_ss) * scale

    # row side: d(b k)_i, dq_i = sum_j dL_ij (dP_ij) e^{gam_i - r} (k_j e^{r - gam_j}), earlier blocks
    b_dbk = tl.zeros([BC, BK], dtype=tl.float32)
    b_dqn = tl.zeros([BC, BK], dtype=tl.float32)
    # column side: dk_j = sum_i e^{r2 - gam_j} (dL_ij bk_i + dP_ij q_i) e^{gam_i - r2}, later blocks
    b_dkn = tl.zeros([BC, BK], dtype=tl.float32)
    for j in tl.static_range(C // BC):
        cols = j * BC + o_r
        if j < i_s:
            b_gj = load_tile(gam, cols, n, H, K, i_h, col0, BK)
            b_y = load_tile(k, cols, n, H, K, i_h, col0, BK) * tl.load(rk + ch * C + cols)[:, None]
            b_y *= tl.exp(tl.minimum(b_r[None, :] - b_gj, 0.0))
            p_blk = (ch * C + rows)[:, None] * C + cols[None, :]
            b_dbk += dot_prec(tl.load(dL + p_blk), b_y, PREC)
            b_dqn += dot_prec(tl.load(dP + p_blk) * scale, b_y, PREC)
        if j > i_s:
            b_gj = load_tile(gam, tl.minimum(cols, n - 1), n, H, K, i_h, col0, BK)
            b_z = tl.exp(tl.minimum(b_gj - b_r2[None, :], 0.0))
            b_kj = load_tile(k, cols, n, H, K, i_h, col0, BK) * tl.load(rk + ch * C + cols)[:, None]
            b_zl = load_tile(b, cols, n, H, K, i_h, col0, BK) * b_kj * b_z
            b_zp = load_tile(q, cols, n, H, K, i_h, col0, BK) * tl.load(rq + ch * C + cols)[:, None] * b_z
            p_blk = (ch * C + cols)[:, None] * C + rows[None, :]
            b_dkn += dot_prec(tl.trans(tl.load(dL + p_blk)), b_zl, PREC)
            b_dkn += dot_prec(tl.trans(tl.load(dP + p_blk) * scale), b_zp, PREC)
    if fast:
        # the diagonal block rides along in the products (factors up to e^SPAN)
        b_y = b_k * tl.exp(tl.minimum(b_r[None, :] - b_gam, SPAN))
        b_dbk += dot_prec(tl.where(o_r[None, :] < o_r[:, None], b_dL_ss, 0.0), b_y, PREC)
        b_dqn += dot_prec(tl.where(o_r[None, :] <= o_r[:, None], b_dP_ss, 0.0), b_y, PREC)
        b_z = tl.exp(tl.minimum(b_gam - b_r2[None, :], SPAN))
        b_dkn += dot_prec(tl.trans(tl.where(o_r[:, None] > o_r[None, :], b_dL_ss, 0.0)), b_bk * b_z, PREC)
        b_dkn += dot_prec(tl.trans(tl.where(o_r[:, None] >= o_r[None, :], b_dP_ss, 0.0)), b_q * b_z, PREC)
    b_er = tl.exp(tl.minimum(b_gam - b_r[None, :], 0.0))
    b_dbk *= b_er
    b_dqn *= b_er
    b_dkn *= tl.exp(tl.minimum(b_r2[None, :] - b_gam, 0.0))
    if not fast:
        # diagonal block, exact pairwise decays
        for jj in range(BC):
            m_j = o_r == jj
            b_gj = tl.sum(tl.where(m_j[:, None], b_gam, 0.0), 0)  # [BK]
            # row side: column j against rows i >= j
            b_kj = tl.sum(tl.where(m_j[:, None], b_k, 0.0), 0)
            m_low = o_r >= jj
            b_ej = tl.exp(tl.where(m_low[:, None], b_gam - b_gj[None, :], 0.0))  # [BC, BK]: e^{gam_i - gam_j}
            b_lcol = tl.where(o_r > jj, tl.sum(tl.where(m_j[None, :], b_dL_ss, 0.0), 1), 0.0)  # dL[i, j]
            b_pcol = tl.where(m_low, tl.sum(tl.where(m_j[None, :], b_dP_ss, 0.0), 1), 0.0)
            b_dbk += b_lcol[:, None] * b_ej * b_kj[None, :]
            b_dqn += b_pcol[:, None] * b_ej * b_kj[None, :]
            # column side: row j against columns i <= j
            b_bkj = tl.sum(tl.where(m_j[:, None], b_bk, 0.0), 0)
            b_qj = tl.sum(tl.where(m_j[:, None], b_q, 0.0), 0)
            m_up = o_r <= jj
            b_fj = tl.exp(tl.where(m_up[:, None], b_gj[None, :] - b_gam, 0.0))  # [BC, BK]: e^{gam_j - gam_i}
            b_lrow = tl.where(o_r < jj, tl.sum(tl.where(m_j[:, None], b_dL_ss, 0.0), 0), 0.0)  # dL[j, i]
            b_prow = tl.where(m_up, tl.sum(tl.where(m_j[:, None], b_dP_ss, 0.0), 0), 0.0)
            b_dkn += b_fj * (b_lrow[:, None] * b_bkj[None, :] + b_prow[:, None] * b_qj[None, :])
    # gamma's share; the grads of the normalised q and k stay in dq_acc, dk_acc for the finish kernel
    o_k = col0 + tl.arange(0, BK)
    p_tk = ((bos + rows) * H + i_h).to(tl.int64)[:, None] * K + o_k[None, :]
    m_tk = (rows < n)[:, None]
    b_dgam = tl.load(dgam + p_tk, mask=m_tk, other=0.0)
    tl.store(dgam + p_tk, b_dgam + b_bk * b_dbk + b_q * b_dqn - b_k * b_dkn, mask=m_tk)
    tl.store(dq_acc + p_tk, b_dqn + tl.load(dq_acc + p_tk, mask=m_tk, other=0.0), mask=m_tk)
    b_dkn += tl.load(dk_acc + p_tk, mask=m_tk, other=0.0) + b_dbk * b_b
    tl.store(dk_acc + p_tk, b_dkn, mask=m_tk)
    b_db = tl.load(db_acc + p_tk, mask=m_tk, other=0.0) + b_dbk * b_k
    tl.store(db + p_tk, b_db.to(db.dtype.element_ty), mask=m_tk)


@triton.jit
def _l2norm_grad_rows(x, dxn, dx, bos, rows, n, i_h, H: tl.constexpr, K: tl.constexpr, L2NORM: tl.constexpr):
    """dx = (dxn - xn (xn . dxn)) / max(|x|, eps) for the given chunk rows (dx = dxn without L2NORM)."""
    p = ((bos + rows) * H + i_h).to(tl.int64)[:, None] * K + tl.arange(0, K)[None, :]
    m = (rows < n)[:, None]
    b_d = tl.load(dxn + p, mask=m, other=0.0)
    if L2NORM:
        b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
        b_nx = tl.maximum(tl.sqrt(tl.sum(b_x * b_x, 1)), 1e-6)[:, None]
        b_xn = b_x / b_nx
        b_d = (b_d - b_xn * tl.sum(b_xn * b_d, 1)[:, None]) / b_nx
    tl.store(dx + p, b_d.to(dx.dtype.element_ty), mask=m)


@triton.jit
def gdn2_bwd_kernel_finish(
    q, k, dq_acc, dk_acc, dgam, dq, dk, dg, chunk_bos, chunk_len,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, L2NORM: tl.constexpr,
):  # fmt: skip
    """Per (chunk, head): dg = reverse cumulative sum of d gamma within the chunk, and dq, dk through the
    L2 normalisation (whole rows, 16 at a time)."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    o_c = tl.arange(0, C)
    p = ((bos + o_c) * H + i_h).to(tl.int64)[:, None] * K + tl.arange(0, K)[None, :]
    m = (o_c < n)[:, None]
    b_d = tl.load(dgam + p, mask=m, other=0.0)  # [C, K]
    # dg_i = sum over i' >= i of d gamma_i'
    tl.store(dg + p, tl.sum(b_d, 0)[None, :] - tl.cumsum(b_d, 0) + b_d, mask=m)
    for s in tl.static_range(C // BC):
        rows = s * BC + tl.arange(0, BC)
        _l2norm_grad_rows(q, dq_acc, dq, bos, rows, n, i_h, H, K, L2NORM)
        _l2norm_grad_rows(k, dk_acc, dk, bos, rows, n, i_h, H, K, L2NORM)


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
    scores: tuple[torch.Tensor, ...],
    tuning: Tuning | None = None,
) -> tuple[torch.Tensor, ...]:
    """Flat [tokens, H, *] inputs and output grad, and the forward's (A, P, rk, rq); returns
    (dq, dk, dv, dg, db, dw, dh0 or None). `tuning`: the launch settings (None: the table's row)."""
    Ttot, H, K = q.shape
    V = v.shape[-1]
    C, BC = chunk_size, 16
    NC, N = table.num_chunks, table.num_seqs
    dev = q.device
    t = tuning if tuning is not None else tuning_for(dev, N, NC, H)
    _, _, it = chunk_gdn2_fwd(
        q, k, v, g, b, w, scale=scale, initial_state=h0, output_final_state=False, table=table,
        l2norm_qk=l2norm_qk, chunk_size=C, save_states=True, scores=scores, tuning=t,
    )  # fmt: skip
    dh = torch.empty(NC, H, K, V, device=dev, dtype=torch.float32)
    du = torch.empty(NC, H, C, V, device=dev, dtype=torch.float32)
    dh0 = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if h0 is not None else None
    BV = min(t.bwd_state_block_v, V)
    gdn2_bwd_kernel_state[(V // BV, H, N)](
        it["kb"], it["qg"], it["ke"], it["eg"], it["P"], do, dht, dh0, dh, du,
        table.chunk_bos, table.chunk_len, table.seq_chunks,
        H=H, K=K, V=V, C=C, BC=BC, BV=BV, HAS_DHT=dht is not None, STORE_DH0=h0 is not None,
        num_warps=t.bwd_state_warps, num_stages=t.bwd_state_stages,
    )  # fmt: skip
    acc = [torch.empty(Ttot, H, K, device=dev, dtype=torch.float32) for _ in range(5)]
    dq_acc, dk_acc, db_acc, dgam, gam = acc
    dv = torch.empty_like(v)
    dw = torch.empty_like(w)
    dP = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
    BVW = min(t.bwd_wy_block_v, V)
    BK = min(t.bwd_wy_block_k, K)
    u = torch.empty(NC, H, C, V, device=dev, dtype=torch.float32)
    dAv = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
    dApart = torch.empty(NC, H, K // BK, C, C, device=dev, dtype=torch.float32)
    gdn2_bwd_kernel_wy_values[(NC, H)](
        it["h"], du, it["ut"], it["kb"], do, v, w, it["A"], u, dP, dAv, dv, dw,
        table.chunk_bos, table.chunk_len, H=H, K=K, V=V, C=C, BV=BVW, num_warps=t.bwd_wy_warps,
        num_stages=t.bwd_wy_stages,
    )  # fmt: skip
    gdn2_bwd_kernel_wy_keys[(NC, H, K // BK)](
        q, k, g, b, it["rq"], it["rk"], it["h"], dh, du, u, do, it["A"], dApart, dq_acc, dk_acc, db_acc, dgam,
        gam, table.chunk_bos, table.chunk_len, scale,
        H=H, K=K, V=V, C=C, BV=BVW, BK=BK, num_warps=t.bwd_wy_warps, num_stages=t.bwd_wy_stages,
    )  # fmt: skip
    gdn2_bwd_kernel_wy_finish[(NC, H)](
        it["A"], dAv, dApart, H=H, C=C, NKB=K // BK, num_warps=t.bwd_wy_finish_warps
    )
    dL = dAv  # the finish kernel left dL there
    del dh, du, u, dApart
    db = torch.empty_like(b)
    BKS = min(t.bwd_scores_block_k, K)
    LAST_COMPILED["bwd_scores"] = gdn2_bwd_kernel_scores[((C // BC) * (K // BKS), NC, H)](
        q, k, gam, b, it["rq"], it["rk"], dL, dP, dq_acc, dk_acc, db_acc, dgam, db,
        table.chunk_bos, table.chunk_len, scale, H=H, K=K, C=C, BC=BC, BK=BKS,
        SPAN=SPAN, PREC=t.bwd_precision, num_warps=t.bwd_scores_warps,
    )  # fmt: skip
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dg = torch.empty_like(g)
    gdn2_bwd_kernel_finish[(NC, H)](
        q, k, dq_acc, dk_acc, dgam, dq, dk, dg, table.chunk_bos, table.chunk_len,
        H=H, K=K, C=C, BC=BC, L2NORM=l2norm_qk, num_warps=4,
    )  # fmt: skip
    return dq, dk, dv, dg, db, dw, dh0
