"""Triton chunkwise forward of GDN-2 in the WY/UT form (DESIGN.md section 2).

Within a chunk of C tokens (gamma = within-chunk cumsum of g, S0 the state entering it):

    L_ij = (b_i k_i e^{gamma_i}) . (k_j e^{-gamma_j})   j < i        A = (I + L)^{-1}
    P_ij = scale (q_i e^{gamma_i}) . (k_j e^{-gamma_j})  j <= i
    Kb = A (B K e^Gamma),   Ut = A (W V)                 U = Ut - Kb S0
    O  = (scale Q e^Gamma) S0 + P U
    S' = Diag(e^{gamma_C}) S0 + (K e^{gamma_C - Gamma})^T U

Steps (one launch each; 1 and 2 run over all chunks in parallel):
  1. `scores` (chunk, 16-row sub-chunk, head): rows of L and P anchored at the sub-chunk's first row, so
     every exponent is bounded; a sub-chunk that decays by more than SPAN gets exact pairwise differences
     on its diagonal block. Its 16 x 16 diagonal blocks of L are stored inverted.
  2. `wy` (chunk, head): A = (I + L)^{-1} from the inverted diagonal blocks, then Kb, Ut and the decayed
     operands Qg, Ke, e^{gamma_C}.
  3. `state_o`: the only sequential part. One program per (V block, head, sequence) keeps its slice of the
     state in registers, walks the chunks and writes O directly, so per-chunk states never touch memory.
     Small V blocks give a single short sequence enough programs to fill the card. A single long one
     runs it in segments on a side stream, with wide V blocks, each overlapping the next segment's steps
     1-2 on the SMs it leaves free.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from gdn2_kernels.common.chunks import ChunkTable

# largest decay (natural log) one 16-token sub-chunk may span before its diagonal block takes the exact
# pairwise path: e^80 stays well inside float32 (and tf32) range
SPAN = 80.0
# input precision of the tensor-core products of the intra-chunk kernels (scores: L and P; wy: the products
# with A), fp32 accumulation either way. "bf16" (operands rounded to bfloat16) measured 3.81 / 2.66 ms vs tf32
# 4.19 / 3.54 ms at 1 x 102400 on an H200, error vs float64 4.0e-3 vs 3.1e-3; "tf32x3" (~fp32) was 2.7x slower
# than tf32 for the same end error, which the bf16 state pass dominates (bench/kernels_probe.py)
SCORES_PRECISION = "bf16"
WY_PRECISION = "bf16"
# warps of the WY kernel, and its K (and V) block: with the diagonal inverses from the scores kernel, 128
# measured 1.94 ms at 1 x 102400 and 0.63 at 8 x 4096 (H200) vs 2.06 / 0.67 at 64, despite 66 spilled
# registers; 8 warps: 3.28 ms. K blocks of 32 crashed on the H200 (illegal address; not pursued)
WY_WARPS = 4
WY_BK = 64
# WY loads each key block's k, b, q tiles before its first store (a load after a store waits for its own
# trip to memory). H200, 64k / 100k, with the scores kernel at 168 registers: 3.362 / 5.112 ms against
# 3.393 / 5.160 for K blocks of 128 stored as they load (raw: bench/results/raw/kernels_overlap_v15_*); at
# K blocks of 128 the held tiles spill 1.3 KB per thread: 4.48 / 6.82
WY_LOADS_FIRST = True
# the scores kernel builds one 16 x 16 block of L and P at a time over [16, K] tiles; 2 warps measured
# 3.10 ms at 1 x 102400 (H200) vs 3.43 at 4 and 6.23 at 8 (the earlier [64, K]-tile row layout: 3.88);
# with the diagonal inversion added (v9): 2.95 at 2 warps vs 5.35 at 4
SCORES_WARPS = 2
# register caps (ptxas maxnreg) of the scores and WY programs, None for the compiler's choice. Scores at 168
# registers runs 6 programs per SM instead of 4 (beside a state program shared memory allows 2). It won once
# the rare exact-diagonal branch stopped holding the common path's tiles (255 registers and 148 B of spills
# before, 221 and none after; at 168, 216 B of spills): H200, 64k / 100k, v15 3.307 / 5.035 ms against
# 3.429 / 5.225 uncapped (bench/results/raw/kernels_overlap_v15_final_h200.log). Other caps (one run, an
# interim load order): 200 (5 per SM, no spills) 3.540 vs 3.508 uncapped, 184: 3.565, 144: 3.603, 128: 3.537.
# Before the branch change the same caps lost (168: 5.70 vs 5.25 ms at 100k, commit 55d0362). WY at 168 (3
# per SM, 112 B of spills) with K blocks of 64: 3.399 / 5.133 vs 3.374 / 5.111 uncapped, no gain
SCORES_MAXNREG: int | None = 168
WY_MAXNREG: int | None = None
# v10 at 1 x 102400: 1.83 ms vs 2.86 at 8 warps and 5.04 at 2 (H200)
STATE_WARPS = 4
# software-pipelining depth of the state pass: the next chunk's operands load while this one computes;
# 3 stages measured 1.85 ms vs 2 stages 2.84 ms at 1 x 102400 (H200); 4 do not fit in shared memory
STATE_STAGES = 3
# storage of the per-chunk operands of the state pass (and of the state fed to its products): bf16
# halves its traffic; the CPU interpreter tests set float32 (the interpreter has no bfloat16)
WORK_DTYPE = torch.bfloat16
# segments of one long sequence (with at least SEGMENT_MIN_CHUNKS chunks each): the state pass of one runs
# on a side stream while scores and WY of the next fill the card. A state program leaves no room on its SM
# for intra programs (3 stages of [C, K] tiles: 213 KB of shared memory at V blocks of 64), so while it
# overlaps, wide V blocks (32 programs at H = 16) leave the most SMs to the intra kernels, despite the
# longer chain of each program; each segment SEGMENT_SHRINK times the one before shortens the last state
# pass, which runs alone. 1 x 102400 on an H200 (bench/kernels_overlap.py, one run): 6.28 ms in one
# segment, 5.89 in 4 at V blocks of 16 (v12), 5.44 in 8 at 32, 5.36 in 8 at 64 with shrink 0.7 (1.0:
# 5.46-5.57); V blocks of 128: 7.9 (7.90 with 8 warps and Ut prefetched, which fits 3 stages in 216 KB);
# 2 stages: 5.8; 8 warps: 6.0 (5.70 with Ut prefetched). With the v15 intra kernels (H200, 64k / 100k):
# 8 segments 3.362 / 5.112 ms, 7: 3.341 / 5.102, 6: 3.350 / 5.118, and with the last state pass at V
# blocks of 16, 8: 3.345 / 5.087, 6: 3.314 / 5.060; shrink 0.6 / 0.8 (8 segments): 3.489 / 5.356,
# 3.468 / 5.199
STATE_SEGMENTS = 6
SEGMENT_MIN_CHUNKS = 64
SEGMENT_BLOCK_V = 64
SEGMENT_SHRINK = 0.7
# V block of the last segment's state pass: it runs alone, so narrow blocks (128 programs) shorten its chain
# (None: SEGMENT_BLOCK_V)
SEGMENT_LAST_BLOCK_V: int | None = 16
# the overlapped state pass loads Ut into registers a step ahead instead of through the pipeliner's stages:
# 192 KB of shared memory instead of 208 and 242 registers instead of 219 (bench/kernels_sm90.py), room for
# one WY or two scores programs beside each state program. Two runs on an H200 (bench/kernels_overlap.py):
# 5.26 -> 5.23 and 5.30 -> 5.25 ms at 1 x 102400, 3.46 -> 3.45 and 3.45 -> 3.44 at 1 x 65536; the
# predicted halving of the overlap cost did not come
SEGMENT_UT_PREFETCH = True
# the last launched kernels, for register / spill reports (bench/kernels_probe.py)
LAST_COMPILED: dict = {}


@triton.jit
def _load_rows(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h):
    """Rows `rows` (chunk-relative token indices) of a [tokens, H, D] tensor as float32, zero past n_valid."""
    o_d = tl.arange(0, D)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None], other=0.0).to(tl.float32)


@triton.jit
def _inv_norm_rows(x, L2NORM: tl.constexpr):
    """1 / max(|x_row|, eps) of each row of x [R, D] (ones without L2NORM): the L2-norm scale."""
    if L2NORM:
        r = 1.0 / tl.maximum(tl.sqrt(tl.sum(x * x, 1)), 1e-6)
    else:
        r = tl.full([x.shape[0]], 1.0, tl.float32)
    return r


@triton.jit
def _operand(x, PREC: tl.constexpr):
    """x as a `_dot` operand: rounded to bfloat16 once (PREC "bf16"), not at every product."""
    if PREC == "bf16":
        x = x.to(tl.bfloat16)
    return x


@triton.jit
def _unit_lower_inverse(b_l, BC: tl.constexpr):
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
def _dot(a, b, PREC: tl.constexpr):
    """a @ b with fp32 accumulation; PREC is a tl.dot input precision or "bf16" (operands rounded first)."""
    if PREC == "bf16":  # noqa: SIM108 (a constexpr if/else compiles one branch; a ternary compiles both)
        r = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        r = tl.dot(a, b, input_precision=PREC)
    return r


@triton.jit
def _load_lower_blocks(ptr, ch, C: tl.constexpr, BC: tl.constexpr):
    """One chunk's [C, C] L or P. The scores kernel stores only the BC x BC blocks on or left of the
    diagonal; the blocks right of it read as zeros."""
    o_c = tl.arange(0, C)
    m = (o_c // BC)[:, None] >= (o_c // BC)[None, :]
    return tl.load(ptr + (ch * C + o_c)[:, None] * C + o_c[None, :], mask=m, other=0.0)


@triton.jit
def _load_raw(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr):
    """Rows x columns [col0, col0 + BD) of a [tokens, H, D] tensor in its own dtype, zero past n_valid."""
    o_d = col0 + tl.arange(0, BD)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None], other=0.0)


@triton.jit
def _load_tile(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr):
    """Rows x columns [col0, col0 + BD) of a [tokens, H, D] tensor as float32, zero past n_valid."""
    return _load_raw(ptr, rows, n_valid, H, D, i_h, col0, BD).to(tl.float32)


@triton.jit
def gdn2_fwd_kernel_scores(
    q, k, g, b, L, P, rk, rq, chunk_bos, chunk_len, scale, c0,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    L2NORM: tl.constexpr, SPAN: tl.constexpr, PREC: tl.constexpr, EXACT_BK: tl.constexpr,
):  # fmt: skip
    """Rows of L and P for one sub-chunk of 16 rows, anchored at its first row r: e^{gam_i - r} <= 1 for
    its rows, e^{r - gam_j} <= 1 for earlier rows and <= e^{span} inside it. A sub-chunk that decays by
    more than SPAN takes exact pairwise differences on its diagonal block. The rows are built one
    16 x 16 block at a time over [16, K] tiles, only the 10 of 16 blocks on or left of the diagonal
    (3.1 vs 3.9 ms for whole [16, C] rows over [C, K] tiles at 1 x 102400, H200).

    Only differences of gamma enter, so they come from sums of g taken here: within the sub-chunk a local
    cumsum, and for an earlier block j, r - gam_j = g_r + (g summed over blocks j .. this one - 1) - its
    local cumsum, accumulated walking back from the diagonal.

    Also stored: the inverse norms 1/|k|, 1/|q| of its rows (read by WY and the backward), and the diagonal
    block already inverted, (I + L_ss)^{-1}, in place of L_ss: in registers here it costs 0.3 ms at
    1 x 102400 (H200) and spares WY 0.8 ms of row-by-row substitution reading L from memory."""
    i_c, i_s, i_h = tl.program_id(0) + c0, tl.program_id(1), tl.program_id(2)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    ch = (i_c * H + i_h).to(tl.int64)
    o_r = tl.arange(0, BC)
    rows = i_s * BC + o_r
    b_g = _load_rows(g, rows, n, H, K, i_h)  # [BC, K], 0 on padding rows
    f_gam = tl.cumsum(b_g, 0)  # [BC, K]: gamma up to an additive constant
    b_g0 = tl.sum(tl.where((o_r == 0)[:, None], b_g, 0.0), 0)  # [K]: g of the anchor row
    b_rel = f_gam - b_g0[None, :]  # [BC, K]: gam_i - r, <= 0
    # decay spanned inside the sub-chunk, max over channels
    b_span = tl.max(-tl.sum(tl.where((o_r == BC - 1)[:, None], b_rel, 0.0), 0), 0)
    b_es = tl.where((rows < n)[:, None], tl.exp(tl.minimum(b_rel, 0.0)), 0.0)
    b_ks = _load_rows(k, rows, n, H, K, i_h)
    b_rk = _inv_norm_rows(b_ks, L2NORM)
    b_ks *= b_rk[:, None]
    b_bk = _load_rows(b, rows, n, H, K, i_h) * b_ks
    b_qs = _load_rows(q, rows, n, H, K, i_h)
    b_rq = _inv_norm_rows(b_qs, L2NORM)
    b_qs *= b_rq[:, None]
    tl.store(rk + ch * C + rows, b_rk)
    tl.store(rq + ch * C + rows, b_rq)
    # the products' operands, rounded once (PREC "bf16")
    b_xe = _operand(b_bk * b_es, PREC)
    b_qe = _operand(b_qs * b_es, PREC)
    # the diagonal block
    b_y = b_ks * tl.exp(tl.minimum(-b_rel, SPAN))
    b_l = _dot(b_xe, tl.trans(b_y), PREC)
    b_p = _dot(b_qe, tl.trans(b_y), PREC)
    # the rare strongly decaying sub-chunk overwrites them (a separate kernel for it measured slower: 2.97
    # vs 2.77 ms at 1 x 102400, H200)
    if b_span >= SPAN:
        b_l, b_p = _exact_diag(q, k, g, b, b_rk, b_rq, rows, n, i_h, H, K, BC, EXACT_BK)
    p_blk = (ch * C + rows)[:, None] * C + rows[None, :]
    b_a = _unit_lower_inverse(tl.where(o_r[None, :] < o_r[:, None], b_l, 0.0), BC)
    tl.store(L + p_blk, b_a.to(L.dtype.element_ty))
    tl.store(P + p_blk, (tl.where(o_r[None, :] <= o_r[:, None], b_p, 0.0) * scale).to(P.dtype.element_ty))
    # earlier blocks, walking back from the diagonal; blocks right of it are never stored (their readers
    # mask them)
    b_back = b_g0  # [K]: r - (gamma before block j) once block j's g is added
    # (a dynamic loop of i_s steps measured the same: 2.96 vs 2.95 ms at 1 x 102400, H200)
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
    common path's [16, K] tiles alive through its products: a branch holding them set the scores kernel's
    register count (255 with 148 B of spills, against 221 and none; ptxas for sm_90), which kept the
    SCORES_MAXNREG cap from paying."""
    o_r = tl.arange(0, BC)
    r0 = tl.min(rows, 0)
    b_l = tl.zeros([BC, BC], dtype=tl.float32)
    b_p = tl.zeros([BC, BC], dtype=tl.float32)
    for col0 in range(0, K, BK):
        o_k = col0 + tl.arange(0, BK)
        f_gam = tl.cumsum(_load_tile(g, rows, n, H, K, i_h, col0, BK), 0)
        b_x = _load_tile(b, rows, n, H, K, i_h, col0, BK) * _load_tile(k, rows, n, H, K, i_h, col0, BK)
        b_x *= b_rk[:, None]
        b_qx = _load_tile(q, rows, n, H, K, i_h, col0, BK) * b_rq[:, None]
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
def _earlier_block(
    k, g, L, P, b_xe, b_qe, b_back, rows, j, ch, n, i_h, scale,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, L2NORM: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Block j (left of the diagonal) of the sub-chunk's rows of L and P; returns b_back with block j's g
    added (see the scores kernel)."""
    cols = j * BC + tl.arange(0, BC)
    p_blk = (ch * C + rows)[:, None] * C + cols[None, :]
    b_gj = _load_rows(g, cols, n, H, K, i_h)
    b_back += tl.sum(b_gj, 0)
    b_kj = _load_rows(k, cols, n, H, K, i_h)
    b_kj *= _inv_norm_rows(b_kj, L2NORM)[:, None]
    b_y = b_kj * tl.exp(tl.minimum(b_back[None, :] - tl.cumsum(b_gj, 0), 0.0))
    tl.store(L + p_blk, _dot(b_xe, tl.trans(b_y), PREC).to(L.dtype.element_ty))
    tl.store(P + p_blk, (_dot(b_qe, tl.trans(b_y), PREC) * scale).to(P.dtype.element_ty))
    return b_back


@triton.jit
def _wy_inverse(L, A, ch, C: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr, STORE_A: tl.constexpr):
    """A = (I + L)^{-1} of one chunk, returned [C, C] and, with STORE_A (for the backward), stored.

    The scores kernel left the diagonal blocks inverted, A_bd; with M = A_bd N (N the blocks below the
    diagonal, M^4 = 0):  A = (I + M)^{-1} A_bd = (I - M)(I + M^2) A_bd.
    """
    o_c = tl.arange(0, C)
    p_cc = (ch * C + o_c)[:, None] * C + o_c[None, :]
    b_t = _load_lower_blocks(L, ch, C, BC).to(tl.float32)  # [C, C]
    blk_i = (o_c // BC)[:, None]
    blk_j = (o_c // BC)[None, :]
    b_abd = tl.where(blk_i == blk_j, b_t, 0.0)
    b_m = _dot(b_abd, tl.where(blk_i > blk_j, b_t, 0.0), PREC)
    eye = tl.where(o_c[:, None] == o_c[None, :], 1.0, 0.0)
    b_A = _dot(_dot(eye - b_m, eye + _dot(b_m, b_m, PREC), PREC), b_abd, PREC)
    if STORE_A:
        tl.store(A + p_cc, b_A)
    return b_A


@triton.jit
def _wy_key_block(
    q, k, g, b, b_A, kb, qg, ke, eg, b_rk, b_rq, ch, n, i_h, col0,
    H: tl.constexpr, K: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
    LOADS_FIRST: tl.constexpr,
):  # fmt: skip
    """Columns [col0, col0 + BK) of Kb = A (B K e^Gamma), Qg, Ke and e^{gamma_C}; q, k, g, b point at the
    chunk. With LOADS_FIRST all four tiles are loaded before the first store: loads and stores keep their
    program order (the compiler cannot rule out aliasing), so a load after a store waits for its own trip to
    memory."""
    o_c = tl.arange(0, C)
    o_k = col0 + tl.arange(0, BK)
    b_g = _load_tile(g, o_c, n, H, K, i_h, col0, BK)  # [C, BK], 0 on padding rows
    if LOADS_FIRST:
        b_kr = _load_raw(k, o_c, n, H, K, i_h, col0, BK)
        b_br = _load_raw(b, o_c, n, H, K, i_h, col0, BK)
        b_qr = _load_raw(q, o_c, n, H, K, i_h, col0, BK)
    b_gam = tl.cumsum(b_g, 0)  # flat on padding rows
    b_gC = tl.sum(b_g, 0)  # [BK]: gamma of the last row
    tl.store(eg + ch * K + o_k, tl.exp(b_gC))
    p_ck = (ch * C + o_c)[:, None] * K + o_k[None, :]
    if not LOADS_FIRST:
        b_kr = _load_raw(k, o_c, n, H, K, i_h, col0, BK)
    b_kn = b_kr.to(tl.float32) * b_rk[:, None]
    tl.store(ke + p_ck, (b_kn * tl.exp(b_gC[None, :] - b_gam)).to(ke.dtype.element_ty))
    b_e = tl.exp(b_gam)
    if not LOADS_FIRST:
        b_br = _load_raw(b, o_c, n, H, K, i_h, col0, BK)
    b_x = b_br.to(tl.float32) * b_kn * b_e
    tl.store(kb + p_ck, _dot(b_A, b_x, PREC).to(kb.dtype.element_ty))
    if not LOADS_FIRST:
        b_qr = _load_raw(q, o_c, n, H, K, i_h, col0, BK)
    b_qg = b_qr.to(tl.float32) * b_rq[:, None] * b_e
    tl.store(qg + p_ck, b_qg.to(qg.dtype.element_ty))


@triton.jit
def _wy_value_block(
    v, w, b_A, ut, ch, n, i_h, col0, H: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BK: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Columns [col0, col0 + BK) of Ut = A (W V); v, w point at the chunk."""
    o_c = tl.arange(0, C)
    o_v = col0 + tl.arange(0, BK)
    b_wv = _load_tile(w, o_c, n, H, V, i_h, col0, BK) * _load_tile(v, o_c, n, H, V, i_h, col0, BK)
    p_cv = (ch * C + o_c)[:, None] * V + o_v[None, :]
    tl.store(ut + p_cv, _dot(b_A, b_wv, PREC).to(ut.dtype.element_ty))


@triton.jit
def gdn2_fwd_kernel_wy(
    q, k, g, b, v, w, L, A, kb, ut, qg, ke, eg, rk, rq, chunk_bos, chunk_len, scale, c0,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    BK: tl.constexpr, PREC: tl.constexpr, INVERT: tl.constexpr, STORE_A: tl.constexpr,
    LOADS_FIRST: tl.constexpr,
):  # fmt: skip
    """A = (I + L)^{-1} (stored with STORE_A; with INVERT off, read from A instead), Kb = A (B K e^Gamma),
    Ut = A (W V), Qg, Ke, e^{gamma_C}. The inverse norms rk, rq come from the scores kernel. LOADS_FIRST:
    each key block's tiles are loaded before its stores (see `_wy_key_block`)."""
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
    for kb_ in tl.static_range(K // BK):
        _wy_key_block(q, k, g, b, b_A, kb, qg, ke, eg, b_rk, b_rq, ch, n, i_h, kb_ * BK, H, K, C, BK, PREC,
                      LOADS_FIRST)  # fmt: skip
    for vb in tl.static_range(V // BK):
        _wy_value_block(v, w, b_A, ut, ch, n, i_h, vb * BK, H, V, C, BK, PREC)


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
            b_p = _load_lower_blocks(P, ch, C, BC)  # [C, C]
            b_o = tl.dot(b_qg, b_sl) + tl.dot(b_p.to(b_kb.dtype), b_ul)  # [C, BV]
            bos = tl.load(chunk_bos + i_c).to(tl.int64)
            n = tl.load(chunk_len + i_c)
            p_o = o + ((bos + o_c) * H + i_h)[:, None] * V + o_v[None, :]
            tl.store(p_o, b_o.to(o.dtype.element_ty), mask=(o_c < n)[:, None])
        b_s = b_s * b_eg[:, None] + tl.dot(tl.trans(b_ke), b_ul)
    if STORE_HT:
        tl.store(ht + p_s, b_s)


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


def launch_pipelined(kernel, grid, *args, stages: int, **kwargs):
    """Launch `kernel[grid]` with `stages` pipeline stages, one fewer each time shared memory is short
    (the stages hold whole [C, K] operand tiles, so what fits depends on K, V and the V block)."""
    for s in range(stages, 0, -1):
        try:
            return kernel[grid](*args, num_stages=s, **kwargs)
        except OutOfResources:
            if s == 1:
                raise
    return None


def segment_bounds(num_chunks: int, n_seg: int) -> list[int]:
    """Chunk boundaries [0, ..., num_chunks] of `n_seg` segments, each SEGMENT_SHRINK times as long as the
    one before. The last segment's state pass runs alone on a few SMs, so a short last segment ends the call
    sooner; the first one's intra kernels overlap nothing either way."""
    weights = [SEGMENT_SHRINK**i for i in range(n_seg)]
    cuts, acc = [0], 0.0
    for wgt in weights:
        acc += wgt
        cut = round(num_chunks * acc / sum(weights))
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts[-1] = num_chunks
    return cuts


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
    block_v: int | None = None,
    save_states: bool = False,
    scores: tuple[torch.Tensor, ...] | None = None,
    keep_inverse: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Forward on flat [tokens, H, *] contiguous inputs; returns (o, final_state, intermediates).

    `save_states` is the backward's recompute: it stores every chunk's entering state in the
    intermediates and skips the output (o is None), which the backward does not read. `scores` is
    (A, P, rk, rq) of an earlier forward over the same inputs (the intermediates of those names): the
    scores step and the inversion are skipped. `keep_inverse` stores A in float32 for the backward; without
    it (inference) A is never written.

    Steps: 1. L, P (scores)  2. A, Kb, Ut, Qg, Ke, e^{gamma_C} (wy)  3. state pass + output (state_o).
    The per-chunk operands read by the state pass are stored in WORK_DTYPE.
    """
    Ttot, H, K = q.shape
    V = v.shape[-1]
    C, BC = chunk_size, 16
    NC, N = table.num_chunks, table.num_seqs
    dev = q.device
    work_dtype = WORK_DTYPE
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
    n_seg = STATE_SEGMENTS if N == 1 and not save_states and NC >= SEGMENT_MIN_CHUNKS * STATE_SEGMENTS else 1
    if block_v is None and n_seg > 1:
        block_v = SEGMENT_BLOCK_V
    elif block_v is None:
        # enough programs to cover the SMs even for one sequence (measured on H200: B=1, H=16 best at
        # 16, v10: 1.83 ms vs 2.05 at 32; 8 x 16 heads best at 64)
        block_v = 64 if N * H >= 128 else (32 if N * H >= 64 else 16)
    BV = min(block_v, V)
    o = None if save_states else torch.empty(Ttot, H, V, device=dev, dtype=v.dtype)
    ht = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if output_final_state else None
    h = torch.empty(NC, H, K, V, device=dev, dtype=torch.float32) if save_states else None

    def intra(c0: int, c1: int) -> None:
        """Scores and WY of chunks [c0, c1)."""
        if scores is None:
            # chunk-major launch order: 3.04 ms vs 3.55 with a chunk's sub-chunks adjacent (1 x 102400, H200)
            LAST_COMPILED["scores"] = gdn2_fwd_kernel_scores[(c1 - c0, C // BC, H)](
                q, k, g, b, L, P, rk, rq, table.chunk_bos, table.chunk_len, scale, c0,
                H=H, K=K, C=C, BC=BC, L2NORM=l2norm_qk, SPAN=SPAN, PREC=SCORES_PRECISION, EXACT_BK=min(32, K),
                num_warps=SCORES_WARPS, **_reg_cap(SCORES_MAXNREG),
            )  # fmt: skip
        LAST_COMPILED["wy"] = gdn2_fwd_kernel_wy[(c1 - c0, H)](
            q, k, g, b, v, w, L, A, kb, ut, qg, ke, eg, rk, rq, table.chunk_bos, table.chunk_len, scale, c0,
            H=H, K=K, V=V, C=C, BC=BC, BK=min(WY_BK, K, V), PREC=WY_PRECISION,
            INVERT=scores is None, STORE_A=scores is None and keep_inverse, LOADS_FIRST=WY_LOADS_FIRST,
            num_warps=WY_WARPS, **_reg_cap(WY_MAXNREG),
        )  # fmt: skip

    def state(seq_chunks, h0, h_out, n_seqs: int, bv: int = BV) -> None:
        LAST_COMPILED["state_o"] = launch_pipelined(
            gdn2_fwd_kernel_state_o, (V // bv, H, n_seqs),
            kb, ut, qg, ke, eg, P, o, h0, h_out, h, table.chunk_bos, table.chunk_len, seq_chunks,
            H=H, K=K, V=V, C=C, BC=BC, BV=bv, HAS_H0=h0 is not None, STORE_HT=h_out is not None,
            STORE_H=save_states, STORE_O=not save_states, UT_PREFETCH=n_seg > 1 and SEGMENT_UT_PREFETCH,
            num_warps=STATE_WARPS, stages=STATE_STAGES,
        )  # fmt: skip

    inter = dict(A=A, P=P, kb=kb, ut=ut, qg=qg, ke=ke, eg=eg, h=h, rk=rk, rq=rq)
    if n_seg == 1:
        intra(0, NC)
        state(table.seq_chunks, initial_state, ht, N)
        return o, ht, inter
    # one long sequence: the state pass of segment s (a side stream, few programs) runs while scores and WY
    # of segment s + 1 fill the rest of the card
    cuts = segment_bounds(NC, n_seg)
    bounds = _device_bounds(tuple(cuts), dev)
    main, side = _streams(dev)
    h_prev = initial_state
    for s_i in range(len(cuts) - 1):
        intra(cuts[s_i], cuts[s_i + 1])
        side.wait_stream(main)
        with _on(side):
            last = s_i == len(cuts) - 2
            h_next = ht if last else torch.empty(1, H, K, V, device=dev, dtype=torch.float32)
            bv = min(SEGMENT_LAST_BLOCK_V or BV, V) if last else BV
            state(bounds[s_i : s_i + 2], h_prev, h_next, 1, bv)
        h_prev = h_next
    main.wait_stream(side)
    return o, ht, inter
