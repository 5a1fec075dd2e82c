"""Triton chunkwise forward of GDN-2 in the WY/UT form (DESIGN.md section 2).

Within a chunk of C tokens (gamma = within-chunk cumsum of g, S0 the state entering it):

    L_ij = (b_i k_i e^{gamma_i}) . (k_j e^{-gamma_j})   j < i        A = (I + L)^{-1}
    P_ij = scale (q_i e^{gamma_i}) . (k_j e^{-gamma_j})  j <= i
    Kb = A (B K e^Gamma),   Ut = A (W V)                 U = Ut - Kb S0
    O  = (scale Q e^Gamma) S0 + P U
    S' = Diag(e^{gamma_C}) S0 + (K e^{gamma_C - Gamma})^T U

Steps (one launch each):
  1. `scores`:  L and P per (chunk, sub-chunk of 16 rows, head). Blocks left of the diagonal factor through
     the cumulative decay at the sub-chunk's first row, so every exponent is <= 0; diagonal blocks use
     pairwise differences. Nothing can overflow, whatever g is.
  2. `wy`:      A = (I + L)^{-1} from 16x16 blocks, then Kb, Ut and the decayed operands Qg, Ke, e^{gamma_C}.
  3. `state_o`: the only sequential part. One program per (V block, head, sequence) keeps its slice of the
     state in registers, walks the chunks and writes O directly, so per-chunk states never touch memory.
     Small V blocks give the single long sequence (B = 1) enough programs to fill the card.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.common.chunks import ChunkTable

EPS = 1e-6


@triton.jit
def _load_rows(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h):
    """Rows `rows` (chunk-relative token indices) of a [tokens, H, D] tensor as float32, zero past n_valid."""
    o_d = tl.arange(0, D)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None], other=0.0).to(tl.float32)


@triton.jit
def _l2norm_rows(x, L2NORM: tl.constexpr):
    if L2NORM:
        x = x / tl.maximum(tl.sqrt(tl.sum(x * x, 1)), 1e-6)[:, None]
    return x


@triton.jit
def gdn2_fwd_kernel_scores(
    q,
    k,
    g,
    b,
    L,
    P,
    chunk_bos,
    chunk_len,
    scale,
    H: tl.constexpr,
    K: tl.constexpr,
    C: tl.constexpr,
    BC: tl.constexpr,
    L2NORM: tl.constexpr,
):
    i_c, i_s, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    row0 = i_s * BC
    o_r = tl.arange(0, BC)
    o_c = tl.arange(0, C)
    rows = row0 + o_r

    b_q = _l2norm_rows(_load_rows(q, rows, n, H, K, i_h), L2NORM)  # [BC, K]
    b_k = _l2norm_rows(_load_rows(k, rows, n, H, K, i_h), L2NORM)  # [BC, K]
    b_bk = _load_rows(b, rows, n, H, K, i_h) * b_k  # [BC, K]
    # cumulative decay of all rows before this sub-chunk, then of the sub-chunk itself
    m_prev = o_c < row0
    b_gp = _load_rows(g, tl.where(m_prev, o_c, C), n, H, K, i_h)  # [C, K], zero from row0 on
    b_gam_p = tl.cumsum(b_gp, 0)  # [C, K]
    b_carry = tl.sum(b_gp, 0)  # [K]
    b_gam = tl.cumsum(_load_rows(g, rows, n, H, K, i_h), 0) + b_carry[None, :]  # [BC, K]
    # anchor at the sub-chunk's first row: gam_i - r <= 0 for its rows and r - gam_j <= 0 for earlier rows
    b_r = tl.sum(tl.where((o_r == 0)[:, None], b_gam, 0.0), 0)  # [K]
    b_kp = _l2norm_rows(_load_rows(k, tl.where(m_prev, o_c, C), n, H, K, i_h), L2NORM)
    b_y = tl.where(m_prev[:, None], b_kp * tl.exp(tl.minimum(b_r[None, :] - b_gam_p, 0.0)), 0.0)  # [C, K]
    b_dec = tl.exp(b_gam - b_r[None, :])  # [BC, K]
    b_L = tl.dot(b_bk * b_dec, tl.trans(b_y), input_precision="tf32x3")  # [BC, C]
    b_P = tl.dot(b_q * b_dec, tl.trans(b_y), input_precision="tf32x3")  # [BC, C]

    # diagonal block: exact pairwise decays, one column at a time; gamma_j accumulates row by row
    b_gj = b_carry
    o_k = tl.arange(0, K)
    for j in range(BC):
        row = row0 + j
        m_row = row < n
        p_j = (row * H + i_h).to(tl.int64) * K + o_k
        b_kj = tl.load(k + p_j, mask=m_row, other=0.0).to(tl.float32)  # [K]
        if L2NORM:
            b_kj = b_kj / tl.maximum(tl.sqrt(tl.sum(b_kj * b_kj)), 1e-6)
        b_gj += tl.load(g + p_j, mask=m_row, other=0.0).to(tl.float32)  # [K]
        m_low = o_r >= j
        b_e = tl.exp(tl.where(m_low[:, None], b_gam - b_gj[None, :], 0.0)) * b_kj[None, :]  # [BC, K]
        b_lc = tl.where(o_r > j, tl.sum(b_bk * b_e, 1), 0.0)  # [BC]
        b_pc = tl.where(m_low, tl.sum(b_q * b_e, 1), 0.0)  # [BC]
        m_col = (o_c == row)[None, :]
        b_L += tl.where(m_col, b_lc[:, None], 0.0)
        b_P += tl.where(m_col, b_pc[:, None], 0.0)

    base = ((i_c * H + i_h) * C + rows).to(tl.int64)[:, None] * C + o_c[None, :]
    tl.store(L + base, b_L)
    tl.store(P + base, (b_P * scale).to(P.dtype.element_ty))


@triton.jit
def _inv_unit_lower_16(b_L, BC: tl.constexpr):
    """(I + L)^{-1} for a strictly lower 16x16 L: (I - L)(I + L^2)(I + L^4)(I + L^8), exact as L^16 = 0."""
    o = tl.arange(0, BC)
    eye = tl.where(o[:, None] == o[None, :], 1.0, 0.0)
    b_L2 = tl.dot(b_L, b_L, input_precision="ieee")
    b_L4 = tl.dot(b_L2, b_L2, input_precision="ieee")
    b_L8 = tl.dot(b_L4, b_L4, input_precision="ieee")
    b_A = tl.dot(eye - b_L, eye + b_L2, input_precision="ieee")
    b_A = tl.dot(b_A, eye + b_L4, input_precision="ieee")
    return tl.dot(b_A, eye + b_L8, input_precision="ieee")


@triton.jit
def _load_block(
    L, i_c, i_h, H: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, bi: tl.constexpr, bj: tl.constexpr
):
    o = tl.arange(0, BC)
    base = ((i_c * H + i_h) * C + bi * BC + o).to(tl.int64)[:, None] * C + bj * BC + o[None, :]
    return tl.load(L + base)


@triton.jit
def _dot(a, b):
    return tl.dot(a, b, input_precision="tf32x3")


@triton.jit
def _store_block(
    L, x, i_c, i_h, H: tl.constexpr, C: tl.constexpr, BC: tl.constexpr, bi: tl.constexpr, bj: tl.constexpr
):  # noqa: E501
    o = tl.arange(0, BC)
    base = ((i_c * H + i_h) * C + bi * BC + o).to(tl.int64)[:, None] * C + bj * BC + o[None, :]
    tl.store(L + base, x)


@triton.jit
def gdn2_fwd_kernel_wy(
    q, k, g, b, v, w, L, kb, ut, qg, ke, eg, chunk_bos, chunk_len, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    L2NORM: tl.constexpr,
):  # fmt: skip
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    tl.static_assert(C == 4 * BC)
    bos = tl.load(chunk_bos + i_c).to(tl.int64)
    n = tl.load(chunk_len + i_c)
    q, k, g, b = q + bos * H * K, k + bos * H * K, g + bos * H * K, b + bos * H * K
    v, w = v + bos * H * V, w + bos * H * V

    # A = (I + L)^{-1} by 16x16 blocks: diagonal inverses, then A_ij = -A_ii sum_{j<=m<i} L_im A_mj
    A00 = _inv_unit_lower_16(_load_block(L, i_c, i_h, H, C, BC, 0, 0), BC)
    A11 = _inv_unit_lower_16(_load_block(L, i_c, i_h, H, C, BC, 1, 1), BC)
    A22 = _inv_unit_lower_16(_load_block(L, i_c, i_h, H, C, BC, 2, 2), BC)
    A33 = _inv_unit_lower_16(_load_block(L, i_c, i_h, H, C, BC, 3, 3), BC)
    L10 = _load_block(L, i_c, i_h, H, C, BC, 1, 0)
    L20 = _load_block(L, i_c, i_h, H, C, BC, 2, 0)
    L21 = _load_block(L, i_c, i_h, H, C, BC, 2, 1)
    L30 = _load_block(L, i_c, i_h, H, C, BC, 3, 0)
    L31 = _load_block(L, i_c, i_h, H, C, BC, 3, 1)
    L32 = _load_block(L, i_c, i_h, H, C, BC, 3, 2)
    A10 = -_dot(A11, _dot(L10, A00))
    A21 = -_dot(A22, _dot(L21, A11))
    A32 = -_dot(A33, _dot(L32, A22))
    A20 = -_dot(A22, _dot(L20, A00) + _dot(L21, A10))
    A31 = -_dot(A33, _dot(L31, A11) + _dot(L32, A21))
    A30 = -_dot(A33, _dot(L30, A00) + _dot(L31, A10) + _dot(L32, A20))
    # A replaces L in place (its upper blocks are zero already), then comes back as one [C, C] tile
    _store_block(L, A00, i_c, i_h, H, C, BC, 0, 0)
    _store_block(L, A11, i_c, i_h, H, C, BC, 1, 1)
    _store_block(L, A22, i_c, i_h, H, C, BC, 2, 2)
    _store_block(L, A33, i_c, i_h, H, C, BC, 3, 3)
    _store_block(L, A10, i_c, i_h, H, C, BC, 1, 0)
    _store_block(L, A20, i_c, i_h, H, C, BC, 2, 0)
    _store_block(L, A21, i_c, i_h, H, C, BC, 2, 1)
    _store_block(L, A30, i_c, i_h, H, C, BC, 3, 0)
    _store_block(L, A31, i_c, i_h, H, C, BC, 3, 1)
    _store_block(L, A32, i_c, i_h, H, C, BC, 3, 2)
    tl.debug_barrier()
    o_c = tl.arange(0, C)
    base = ((i_c * H + i_h) * C + o_c).to(tl.int64)
    b_A = tl.load(L + base[:, None] * C + o_c[None, :])  # [C, C]

    b_g = _load_rows(g, o_c, n, H, K, i_h)  # [C, K]
    b_gam = tl.cumsum(b_g, 0)
    b_gC = tl.sum(b_g, 0)  # [K]
    b_k = _l2norm_rows(_load_rows(k, o_c, n, H, K, i_h), L2NORM)
    o_k = tl.arange(0, K)
    o_v = tl.arange(0, V)
    tl.store(
        ke + base[:, None] * K + o_k[None, :], (b_k * tl.exp(b_gC[None, :] - b_gam)).to(ke.dtype.element_ty)
    )
    b_e = tl.exp(b_gam)
    b_x = _load_rows(b, o_c, n, H, K, i_h) * b_k * b_e
    tl.store(kb + base[:, None] * K + o_k[None, :], _dot(b_A, b_x).to(kb.dtype.element_ty))
    b_q = _l2norm_rows(_load_rows(q, o_c, n, H, K, i_h), L2NORM)
    tl.store(qg + base[:, None] * K + o_k[None, :], (b_q * b_e * scale).to(qg.dtype.element_ty))
    b_wv = _load_rows(w, o_c, n, H, V, i_h) * _load_rows(v, o_c, n, H, V, i_h)
    tl.store(ut + base[:, None] * V + o_v[None, :], _dot(b_A, b_wv).to(ut.dtype.element_ty))
    tl.store(eg + (i_c * H + i_h).to(tl.int64) * K + o_k, tl.exp(b_gC))


@triton.jit
def gdn2_fwd_kernel_state_o(
    kb, ut, qg, ke, eg, P, o, h0, ht, h, chunk_bos, chunk_len, seq_chunks,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_H: tl.constexpr,
):  # fmt: skip
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
    for i_c in range(c_lo, c_hi):
        ch = (i_c * H + i_h).to(tl.int64)
        p_ck = (ch * C + o_c)[:, None] * K + o_k[None, :]
        b_kb = tl.load(kb + p_ck)  # [C, K]
        b_qg = tl.load(qg + p_ck)  # [C, K]
        b_ke = tl.load(ke + p_ck)  # [C, K]
        b_p = tl.load(P + (ch * C + o_c)[:, None] * C + o_c[None, :])  # [C, C]
        b_ut = tl.load(ut + (ch * C + o_c)[:, None] * V + o_v[None, :]).to(tl.float32)  # [C, BV]
        b_eg = tl.load(eg + ch * K + o_k)  # [K]
        if STORE_H:
            tl.store(h + (ch * K + o_k)[:, None] * V + o_v[None, :], b_s.to(h.dtype.element_ty))
        b_sl = b_s.to(b_kb.dtype)
        b_u = b_ut - tl.dot(b_kb, b_sl)  # [C, BV]
        b_ul = b_u.to(b_kb.dtype)
        b_o = tl.dot(b_qg, b_sl) + tl.dot(b_p.to(b_kb.dtype), b_ul)  # [C, BV]
        bos = tl.load(chunk_bos + i_c).to(tl.int64)
        n = tl.load(chunk_len + i_c)
        p_o = o + ((bos + o_c) * H + i_h)[:, None] * V + o_v[None, :]
        tl.store(p_o, b_o.to(o.dtype.element_ty), mask=(o_c < n)[:, None])
        b_s = b_s * b_eg[:, None] + tl.dot(tl.trans(b_ke), b_ul)
    if STORE_HT:
        tl.store(ht + p_s, b_s)


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
    work_dtype: torch.dtype = torch.bfloat16,
    save_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Forward on flat [tokens, H, *] contiguous inputs; returns (o, final_state, intermediates).

    Steps: 1. L, P (scores)  2. A, Kb, Ut, Qg, Ke, e^{gamma_C} (wy)  3. state pass + output (state_o).
    `work_dtype` is the storage of the per-chunk operands read by the state pass (bf16 halves its traffic).
    """
    Ttot, H, K = q.shape
    V = v.shape[-1]
    C, BC = chunk_size, 16
    NC, N = table.num_chunks, table.num_seqs
    dev = q.device
    L = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
    P = torch.empty(NC, H, C, C, device=dev, dtype=torch.float32)
    gdn2_fwd_kernel_scores[(NC, C // BC, H)](
        q, k, g, b, L, P, table.chunk_bos, table.chunk_len, scale, H=H, K=K, C=C, BC=BC, L2NORM=l2norm_qk,
        num_warps=4,
    )  # fmt: skip
    kb = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    qg = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    ke = torch.empty(NC, H, C, K, device=dev, dtype=work_dtype)
    ut = torch.empty(NC, H, C, V, device=dev, dtype=work_dtype)
    eg = torch.empty(NC, H, K, device=dev, dtype=torch.float32)
    gdn2_fwd_kernel_wy[(NC, H)](
        q, k, g, b, v, w, L, kb, ut, qg, ke, eg, table.chunk_bos, table.chunk_len, scale,
        H=H, K=K, V=V, C=C, BC=BC, L2NORM=l2norm_qk, num_warps=8,
    )  # fmt: skip
    if block_v is None:
        # enough programs to cover the SMs even for one sequence: H * V / BV >= ~2 waves of 64
        block_v = 16 if N * H * V // 32 < 256 else 32
    BV = min(block_v, V)
    o = torch.empty(Ttot, H, V, device=dev, dtype=v.dtype)
    ht = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if output_final_state else None
    h = torch.empty(NC, H, K, V, device=dev, dtype=torch.float32) if save_states else None
    gdn2_fwd_kernel_state_o[(V // BV, H, N)](
        kb, ut, qg, ke, eg, P, o, initial_state, ht, h, table.chunk_bos, table.chunk_len, table.seq_chunks,
        H=H, K=K, V=V, C=C, BV=BV, HAS_H0=initial_state is not None, STORE_HT=output_final_state,
        STORE_H=save_states, num_warps=4, num_stages=2,
    )  # fmt: skip
    inter = dict(L=L, P=P, kb=kb, ut=ut, qg=qg, ke=ke, eg=eg, h=h)
    return o, ht, inter
