"""Fused recurrent GDN-2 for decode: a few tokens from a state, the state updated in place.

One program per (V block, head, sequence) holds S[:, V block] in registers for all T tokens:
decay, erase-read e = S^T (b k), write S += k (w v - e)^T, read o = S^T q * scale (the reads taken from
the state before the write, so they run side by side). The state is read
and written once per call, which is the whole memory cost of a decode step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def gdn2_fused_recurrent_kernel(
    q, k, v, g, b, w, o, state, T, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, L2NORM: tl.constexpr,
):  # fmt: skip
    i_v, i_h, i_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    p_s = state + ((i_n * H + i_h) * K + o_k).to(tl.int64)[:, None] * V + o_v[None, :]
    b_s = tl.load(p_s)  # [K, BV]
    for t in range(T):
        tok = (i_n * T + t).to(tl.int64) * H + i_h
        b_q = tl.load(q + tok * K + o_k).to(tl.float32)
        b_k = tl.load(k + tok * K + o_k).to(tl.float32)
        if L2NORM:
            b_q = b_q / tl.maximum(tl.sqrt(tl.sum(b_q * b_q)), 1e-6)
            b_k = b_k / tl.maximum(tl.sqrt(tl.sum(b_k * b_k)), 1e-6)
        b_g = tl.load(g + tok * K + o_k).to(tl.float32)
        b_b = tl.load(b + tok * K + o_k).to(tl.float32)
        b_v = tl.load(v + tok * V + o_v).to(tl.float32)
        b_w = tl.load(w + tok * V + o_v).to(tl.float32)
        # with D = Diag(exp g): what the erase-gated key reads back, e = (D S)^T (b k), and the output
        # o = (D S + k u^T)^T q = (D S)^T q + (k . q) u, u = w v - e. Both reads of the old state are
        # independent reductions, and the output does not wait for the state update.
        b_d = tl.exp(b_g)
        b_e = tl.sum(b_s * (b_d * b_b * b_k)[:, None], 0)  # [BV]
        b_sq = tl.sum(b_s * (b_d * b_q)[:, None], 0)  # [BV]
        b_u = b_w * b_v - b_e
        b_o = (b_sq + tl.sum(b_k * b_q) * b_u) * scale
        tl.store(o + tok * V + o_v, b_o.to(o.dtype.element_ty))
        b_s = b_s * b_d[:, None] + b_k[:, None] * b_u[None, :]
    tl.store(p_s, b_s)


def fused_recurrent_gdn2_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float,
    l2norm_qk: bool,
    block_v: int,
    num_warps: int = 1,
) -> torch.Tensor:
    """Decode [B, T, H, *] contiguous inputs from `state` [B, H, K, V] float32, in place; returns o.
    `block_v`, `num_warps`: V columns and warps per program (the tuning row's `decode_*`)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BV = min(block_v, V)
    o = torch.empty_like(v)
    gdn2_fused_recurrent_kernel[(V // BV, H, B)](
        q, k, v, g, b, w, o, state, T, scale, H=H, K=K, V=V, BV=BV, L2NORM=l2norm_qk, num_warps=num_warps,
    )  # fmt: skip
    return o
