"""Intra-chunk step of the GDN-2 forward: the rows of L and P per 16-row sub-chunk (`chunk_fwd.py` has the
notation), with the diagonal blocks of L stored inverted.

    L_ij = (b_i k_i e^{gamma_i}) . (k_j e^{-gamma_j})   j < i
    P_ij = scale (q_i e^{gamma_i}) . (k_j e^{-gamma_j})  j <= i

One program per (chunk, sub-chunk, head), all chunks in parallel. Rows are anchored at the sub-chunk's
first row so every exponent is bounded; a sub-chunk that decays by more than SPAN takes exact pairwise
differences on its diagonal block.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gdn2_kernels.common.tl_helpers import as_operand, dot_prec, inv_norm_rows, load_rows, load_tile

# largest decay (natural log) one 16-token sub-chunk may span before its diagonal block takes the exact
# pairwise path: e^80 stays well inside float32 range
SPAN = 80.0


@triton.jit
def unit_lower_inverse(b_l, BC: tl.constexpr):
    """(I + L)^{-1} of a strictly lower-triangular [BC, BC] block held in registers (BC = 16).

    With X = -L nilpotent (X^16 = 0), (I - X)^{-1} = (I + X)(I + X^2)(I + X^4)(I + X^8): six small fp32
    products instead of BC dependent row steps, each reading a row of L from memory.
    """
    o = tl.arange(0, BC)
    b_x = -b_l
    b_a = tl.where(o[:, None] == o[None, :], 1.0, 0.0) + b_x
    for _sq in tl.static_range(3):
        b_x = tl.dot(b_x, b_x, input_precision="ieee")
        b_a += tl.dot(b_a, b_x, input_precision="ieee")
    return b_a


@triton.jit
def gdn2_fwd_kernel_scores(
    q, k, g, b, L, P, rk, rq, chunk_bos, chunk_len, scale, c0,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    L2NORM: tl.constexpr, SPAN: tl.constexpr, PREC: tl.constexpr, EXACT_BK: tl.constexpr,
    EXACT_LEVELS: tl.constexpr,
):  # fmt: skip
    """Rows of L and P for one sub-chunk of 16 rows, anchored at its first row r: e^{gam_i - r} <= 1 for
    its rows, e^{r - gam_j} <= 1 for earlier rows and <= e^{span} inside it. A sub-chunk that decays by
    more than SPAN takes exact pairwise differences on its diagonal block. The rows are built one
    16 x 16 block at a time over [16, K] tiles, only the 10 of 16 blocks on or left of the diagonal.

    Only differences of gamma enter, so they come from sums of g taken here: within the sub-chunk a local
    cumsum, and for an earlier block j, r - gam_j = g_r + (g summed over blocks j .. this one - 1) - its
    local cumsum, accumulated walking back from the diagonal.

    Also stored: the inverse norms 1/|k|, 1/|q| of its rows (read by WY and the backward), and the diagonal
    block already inverted, (I + L_ss)^{-1}, in place of L_ss, which spares WY a row-by-row substitution
    reading L from memory."""
    i_c, i_s, i_h = tl.program_id(0) + c0, tl.program_id(1), tl.program_id(2)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    ch = (i_c * H + i_h).to(tl.int64)
    o_r = tl.arange(0, BC)
    rows = i_s * BC + o_r
    b_g = load_rows(g, rows, n, H, K, i_h)  # [BC, K], 0 on padding rows
    f_gam = tl.cumsum(b_g, 0)  # [BC, K]: gamma up to an additive constant
    b_g0 = tl.sum(tl.where((o_r == 0)[:, None], b_g, 0.0), 0)  # [K]: g of the anchor row
    b_rel = f_gam - b_g0[None, :]  # [BC, K]: gam_i - r, <= 0
    # decay spanned inside the sub-chunk, max over channels
    b_span = tl.max(-tl.sum(tl.where((o_r == BC - 1)[:, None], b_rel, 0.0), 0), 0)
    b_es = tl.where((rows < n)[:, None], tl.exp(tl.minimum(b_rel, 0.0)), 0.0)
    b_ks = load_rows(k, rows, n, H, K, i_h)
    b_rk = inv_norm_rows(b_ks, L2NORM)
    b_ks *= b_rk[:, None]
    b_bk = load_rows(b, rows, n, H, K, i_h) * b_ks
    b_qs = load_rows(q, rows, n, H, K, i_h)
    b_rq = inv_norm_rows(b_qs, L2NORM)
    b_qs *= b_rq[:, None]
    tl.store(rk + ch * C + rows, b_rk)
    tl.store(rq + ch * C + rows, b_rq)
    # the products' operands, rounded once (PREC "bf16")
    b_xe = as_operand(b_bk * b_es, PREC)
    b_qe = as_operand(b_qs * b_es, PREC)
    # the diagonal block
    b_y = b_ks * tl.exp(tl.minimum(-b_rel, SPAN))
    b_l = dot_prec(b_xe, tl.trans(b_y), PREC)
    b_p = dot_prec(b_qe, tl.trans(b_y), PREC)
    # the rare strongly decaying sub-chunk overwrites them
    if b_span >= SPAN:
        if EXACT_LEVELS:
            b_l, b_p = _exact_diag_levels(q, k, g, b, b_rk, b_rq, rows, n, i_h, H, K, BC, EXACT_BK, PREC)
        else:
            b_l, b_p = _exact_diag(q, k, g, b, b_rk, b_rq, rows, n, i_h, H, K, BC, EXACT_BK)
    p_blk = (ch * C + rows)[:, None] * C + rows[None, :]
    b_a = unit_lower_inverse(tl.where(o_r[None, :] < o_r[:, None], b_l, 0.0), BC)
    tl.store(L + p_blk, b_a.to(L.dtype.element_ty))
    tl.store(P + p_blk, (tl.where(o_r[None, :] <= o_r[:, None], b_p, 0.0) * scale).to(P.dtype.element_ty))
    # earlier blocks, walking back from the diagonal; blocks right of it are never stored (their readers
    # mask them)
    b_back = b_g0  # [K]: r - (gamma before block j) once block j's g is added
    for jr in tl.static_range(C // BC):
        j = C // BC - 1 - jr
        if j < i_s:
            b_back = _earlier_block(k, g, L, P, b_xe, b_qe, b_back, rows, j, ch, n, i_h, scale,
                                    H, K, C, BC, L2NORM, PREC)  # fmt: skip


@triton.jit
def _exact_diag(
    q, k, g, b, b_rk, b_rq, rows, n, i_h, H: tl.constexpr, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr
):
    """L and P of a sub-chunk's diagonal block with exact pairwise decays e^{gam_i - gam_j}: the rare path
    of a sub-chunk that decays by more than SPAN. b_rk, b_rq: the rows' inverse norms.

    It loads its rows again (cache hits), BK channels and one column j at a time, rather than keep the
    common path's [16, K] tiles alive through its products, which would set the whole kernel's register
    count."""
    o_r = tl.arange(0, BC)
    r0 = tl.min(rows, 0)
    b_l = tl.zeros([BC, BC], dtype=tl.float32)
    b_p = tl.zeros([BC, BC], dtype=tl.float32)
    for col0 in range(0, K, BK):
        o_k = col0 + tl.arange(0, BK)
        f_gam = tl.cumsum(load_tile(g, rows, n, H, K, i_h, col0, BK), 0)
        b_x = load_tile(b, rows, n, H, K, i_h, col0, BK) * load_tile(k, rows, n, H, K, i_h, col0, BK)
        b_x *= b_rk[:, None]
        b_qx = load_tile(q, rows, n, H, K, i_h, col0, BK) * b_rq[:, None]
        f_gj = tl.zeros([BK], dtype=tl.float32)
        for jj in range(BC):
            p_j = (r0 + jj).to(tl.int64) * (H * K) + i_h * K + o_k
            m_j = (o_k * 0 + r0 + jj) < n  # as a vector: the interpreter rejects a scalar mask
            f_rkj = tl.sum(tl.where(o_r == jj, b_rk, 0.0), 0)
            f_gj += tl.load(g + p_j, mask=m_j, other=0.0)  # gamma of row jj, as f_gam's
            f_kj = tl.load(k + p_j, mask=m_j, other=0.0).to(tl.float32) * f_rkj
            f_e = tl.exp(tl.where((o_r >= jj)[:, None], f_gam - f_gj[None, :], 0.0)) * f_kj[None, :]
            m_col = (o_r == jj)[None, :]
            b_l += tl.where(m_col, tl.sum(b_x * f_e, 1)[:, None], 0.0)
            b_p += tl.where(m_col, tl.sum(b_qx * f_e, 1)[:, None], 0.0)
    return b_l, b_p


@triton.jit
def _exact_diag_levels(
    q, k, g, b, b_rk, b_rq, rows, n, i_h,
    H: tl.constexpr, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """`_exact_diag` by products: every pair j < i of the block is split at a row r with j < r <= i, so
    e^{gam_i - gam_j} = e^{gam_i - gam_r} e^{gam_r - gam_j}, both factors <= 1 (gamma only falls). Level s
    (8, 4, 2, 1) takes the pairs whose rows sit in the upper and whose columns in the lower half of one
    group of 2s rows, split at the group's middle row: one [16, BK] x [BK, 16] product per level and output
    instead of 16 column steps, and 2 x 16 x K exponentials per level instead of 16 x 16 x K in all."""
    o_r = tl.arange(0, BC)
    b_l = tl.zeros([BC, BC], dtype=tl.float32)
    b_p = tl.zeros([BC, BC], dtype=tl.float32)
    for col0 in range(0, K, BK):
        f_gam = tl.cumsum(load_tile(g, rows, n, H, K, i_h, col0, BK), 0)  # [BC, BK]
        b_kn = load_tile(k, rows, n, H, K, i_h, col0, BK) * b_rk[:, None]
        b_x = load_tile(b, rows, n, H, K, i_h, col0, BK) * b_kn
        b_qx = load_tile(q, rows, n, H, K, i_h, col0, BK) * b_rq[:, None]
        # the diagonal of P: e^0
        b_p += tl.where(o_r[:, None] == o_r[None, :], tl.sum(b_qx * b_kn, 1)[:, None], 0.0)
        for lv in tl.static_range(4):
            s = 8 >> lv
            grp = o_r // (2 * s)
            upper = (o_r % (2 * s)) >= s
            # gamma of each row's split row (its group's middle row), picked by an exact 0/1 product
            pick = tl.where(o_r[None, :] == (grp * 2 * s + s)[:, None], 1.0, 0.0)
            f_ref = tl.dot(pick, f_gam, input_precision="ieee")
            e_row = tl.where(upper[:, None], tl.exp(tl.minimum(f_gam - f_ref, 0.0)), 0.0)
            e_col = tl.where(upper[:, None], 0.0, tl.exp(tl.minimum(f_ref - f_gam, 0.0)))
            b_y = b_kn * e_col
            same = grp[:, None] == grp[None, :]
            b_l += tl.where(same, dot_prec(b_x * e_row, tl.trans(b_y), PREC), 0.0)
            b_p += tl.where(same, dot_prec(b_qx * e_row, tl.trans(b_y), PREC), 0.0)
    return b_l, b_p


@triton.jit
def _earlier_block(
    k, g, L, P, b_xe, b_qe, b_back, rows, j, ch, n, i_h, scale,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, L2NORM: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Block j (left of the diagonal) of the sub-chunk's rows of L and P; returns b_back with block j's g
    added (see the scores kernel)."""
    cols = j * BC + tl.arange(0, BC)
    p_blk = (ch * C + rows)[:, None] * C + cols[None, :]
    b_gj = load_rows(g, cols, n, H, K, i_h)
    b_back += tl.sum(b_gj, 0)
    b_kj = load_rows(k, cols, n, H, K, i_h)
    b_kj *= inv_norm_rows(b_kj, L2NORM)[:, None]
    b_y = b_kj * tl.exp(tl.minimum(b_back[None, :] - tl.cumsum(b_gj, 0), 0.0))
    tl.store(L + p_blk, dot_prec(b_xe, tl.trans(b_y), PREC).to(L.dtype.element_ty))
    tl.store(P + p_blk, (dot_prec(b_qe, tl.trans(b_y), PREC) * scale).to(P.dtype.element_ty))
    return b_back
