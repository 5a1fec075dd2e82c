"""Triton kernels for the elementwise work around the operator in a GDN-2 layer (inference only).

At 100k tokens a layer's activations are ~0.4 GB per [T, 2048] bf16 tensor, so every separate PyTorch
pass (a shift-and-add step of the conv, a softplus, a sigmoid, a product) costs ~0.2 ms of pure memory
traffic; the unfused layer spends more time there than in the recurrence. Each kernel here reads its
inputs once and writes its output once:

    causal_conv1d_silu(x, weight, bias, cache)   y_t = silu(bias + sum_s weight[:, W-1-s] * x_{t-s})
                                                 (x_{t-s} = 0 before t's packed sequence starts)
    decay_gate(f, dt_bias, A_log)                g = -exp(A_log[head]) * softplus(f + dt_bias), float32
    rms_norm_gated(o, gate, weight, eps, act)    rms_norm(o) * weight * act(gate), act sigmoid or silu
    silu_mul(a, b)                               silu(a) * b   (SwiGLU)

None has a backward: the model calls them only under `torch.no_grad()` / `inference_mode()` on CUDA and
keeps its PyTorch ops (the reference these are tested against) for training and for the CPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["causal_conv1d_silu", "decay_gate", "rms_norm_gated", "silu_mul"]

_BLOCK = 1024


@triton.jit
def _silu(x):
    return x / (1.0 + tl.exp(-x))


@triton.jit
def _conv_silu_kernel(
    x, w, bias, cache, pos, y, T, D, stride_xb, stride_xt,
    W: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    HAS_POS: tl.constexpr,
):  # fmt: skip
    i_t, i_d, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = i_t * BT + tl.arange(0, BT)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < D
    acc = tl.zeros([BT, BD], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
    x_b = x + i_b.to(tl.int64) * stride_xb
    if HAS_POS:
        # packed sequences: x_{t-s} belongs to the same sequence only when t is at least s into it
        b_pos = tl.load(pos + o_t, mask=o_t < T, other=0)
    for s in tl.static_range(W):
        w_s = tl.load(w + o_d * W + (W - 1 - s), mask=m_d, other=0.0).to(tl.float32)  # tap on x_{t-s}
        src = o_t - s
        m_x = (src >= 0) & (o_t < T)
        if HAS_POS:
            m_x &= b_pos >= s
        b_x = tl.load(
            x_b + src.to(tl.int64)[:, None] * stride_xt + o_d[None, :],
            mask=m_x[:, None] & m_d[None, :],
            other=0.0,
        ).to(tl.float32)
        if HAS_CACHE:
            # t - s < 0 reaches into the previous call's last W-1 inputs: cache row W-1+(t-s)
            m_c = (src < 0) & (o_t < T)
            b_c = tl.load(
                cache + i_b.to(tl.int64) * (W - 1) * D + (W - 1 + src)[:, None] * D + o_d[None, :],
                mask=m_c[:, None] & m_d[None, :],
                other=0.0,
            ).to(tl.float32)
            b_x += b_c
        acc += b_x * w_s[None, :]
    p_y = y + (i_b.to(tl.int64) * T + o_t.to(tl.int64))[:, None] * D + o_d[None, :]
    tl.store(p_y, _silu(acc).to(y.dtype.element_ty), mask=(o_t < T)[:, None] & m_d[None, :])


def causal_conv1d_silu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    cache: torch.Tensor | None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise causal conv + SiLU of x [B, T, D] (last dim contiguous) with weight [D, W]; `cache`
    [B, W-1, D] holds the inputs before x (None: zeros). `positions` [T] (B == 1, no cache): each token's
    index in its own packed sequence, so no tap reaches into the sequence before. Returns a new
    contiguous [B, T, D] in x's dtype."""
    B, T, D = x.shape
    W = weight.shape[-1]
    assert x.stride(2) == 1, "x must be contiguous along its channels"
    assert positions is None or (B == 1 and cache is None), "positions pack sequences into B == 1"
    y = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    if T == 0:
        return y
    BT, BD = 32, 128
    cache_arg = cache.to(x.dtype).contiguous() if cache is not None else x
    _conv_silu_kernel[(triton.cdiv(T, BT), triton.cdiv(D, BD), B)](
        x, weight.reshape(D, W).contiguous(), bias if bias is not None else x, cache_arg,
        positions if positions is not None else x, y, T, D, x.stride(0), x.stride(1),
        W=W, BT=BT, BD=BD, HAS_BIAS=bias is not None, HAS_CACHE=cache is not None,
        HAS_POS=positions is not None,
    )  # fmt: skip
    return y


@triton.jit
def _decay_gate_kernel(f, dt_bias, A_log, g, n, C, K: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    col = offs % C
    z = tl.load(f + offs, mask=m, other=0.0).to(tl.float32) + tl.load(dt_bias + col, mask=m, other=0.0)
    # softplus as torch (threshold 20), exp(z) itself where log(1 + exp(z)) would round to 0
    sp = tl.where(z > 20.0, z, tl.where(z < -15.0, tl.exp(z), tl.log(1.0 + tl.exp(z))))
    a = tl.exp(tl.load(A_log + col // K, mask=m, other=0.0).to(tl.float32))
    tl.store(g + offs, -a * sp, mask=m)


def decay_gate(f: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor) -> torch.Tensor:
    """g = -exp(A_log[c // K]) * softplus(f[..., c] + dt_bias[c]) in float32; f [..., H*K] contiguous,
    dt_bias [H*K], A_log [H]."""
    C = f.shape[-1]
    H = A_log.numel()
    f = f.contiguous()
    g = torch.empty(f.shape, device=f.device, dtype=torch.float32)
    n = f.numel()
    if n:
        _decay_gate_kernel[(triton.cdiv(n, _BLOCK),)](
            f, dt_bias.float().contiguous(), A_log.float().contiguous(), g, n, C, K=C // H, BLOCK=_BLOCK
        )
    return g


@triton.jit
def _rms_norm_gated_kernel(
    o, gate, weight, y, R, eps, V: tl.constexpr, BR: tl.constexpr, SIGMOID: tl.constexpr
):  # fmt: skip
    o_r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    o_v = tl.arange(0, V)
    m = (o_r < R)[:, None]
    p = o_r[:, None] * V + o_v[None, :]
    b_o = tl.load(o + p, mask=m, other=0.0).to(tl.float32)
    b_g = tl.load(gate + p, mask=m, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(b_o * b_o, 1) / V + eps)
    act = tl.sigmoid(b_g) if SIGMOID else _silu(b_g)
    b_y = b_o * rstd[:, None] * tl.load(weight + o_v).to(tl.float32)[None, :] * act
    tl.store(y + p, b_y.to(y.dtype.element_ty), mask=m)


def rms_norm_gated(
    o: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float, activation: str
) -> torch.Tensor:
    """rms_norm(o) * weight * act(gate) over the last dim V (a power of two), in o's dtype; act is
    "sigmoid" or "swish"/"silu"."""
    V = o.shape[-1]
    o2, g2 = o.reshape(-1, V).contiguous(), gate.reshape(-1, V).contiguous()
    y = torch.empty_like(o2)
    R = o2.shape[0]
    BR = max(1, 4096 // V)
    if R:
        _rms_norm_gated_kernel[(triton.cdiv(R, BR),)](
            o2, g2, weight.contiguous(), y, R, eps, V=V, BR=BR, SIGMOID=activation == "sigmoid"
        )
    return y.view(o.shape)


@triton.jit
def _silu_mul_kernel(a, b, y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    b_a = tl.load(a + offs, mask=m, other=0.0).to(tl.float32)
    b_b = tl.load(b + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(y + offs, (_silu(b_a) * b_b).to(y.dtype.element_ty), mask=m)


def silu_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """silu(a) * b elementwise (same shape and dtype), computed in float32."""
    a, b = a.contiguous(), b.contiguous()
    y = torch.empty_like(a)
    n = a.numel()
    if n:
        _silu_mul_kernel[(triton.cdiv(n, _BLOCK),)](a, b, y, n, BLOCK=_BLOCK)
    return y
