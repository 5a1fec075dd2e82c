"""Sliding-window softmax attention for the hybrid layers (torch SDPA), with RoPE and a windowed cache.

Query at absolute position p attends to keys at positions p - window + 1 .. p. Queries are processed in
blocks of `window` so the mask is at most window x 2*window (never T x T); when the whole span fits the
window and there is no padding, SDPA gets `is_causal=True` and can take its flash path on GPU. The cache
keeps the last `window - 1` keys/values, so memory is bounded by the window, not the context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdn2_model.cache import AttentionLayerState, GDN2Cache

__all__ = ["SlidingWindowAttention", "apply_rotary"]


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE on [B, T, H, d] at integer `positions` [T] (computed in float32)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [T, d/2]
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    x1, x2 = x.float()[..., : d // 2], x.float()[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class SlidingWindowAttention(nn.Module):
    """Multi-head (grouped-query) attention over a causal sliding window; FLA `Attention` parameter names."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        window_size: int = 2048,
        rope_theta: float = 10000.0,
        qkv_bias: bool = False,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        if hidden_size % num_heads or num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size={hidden_size}, num_heads={num_heads}, "
                f"num_kv_heads={self.num_kv_heads} do not divide"
            )
        self.head_dim = hidden_size // num_heads
        self.window_size = window_size
        self.rope_theta = rope_theta
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        use_cache: bool = False,
        cu_seqlens: torch.Tensor | None = None,
        position_offset: int = 0,
    ) -> torch.Tensor:
        """[B, T, hidden] -> [B, T, hidden]. Packed input (`cu_seqlens`, B=1) runs sequence by sequence."""
        if cu_seqlens is not None:
            bounds = cu_seqlens.tolist()
            parts = [
                self._attend(hidden_states[:, s:e], None, None, False, 0)
                for s, e in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            return torch.cat(parts, dim=1)
        return self._attend(hidden_states, attention_mask, cache, use_cache, position_offset)

    def _attend(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: GDN2Cache | None,
        use_cache: bool,
        position_offset: int,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        W = self.window_size
        positions = torch.arange(position_offset, position_offset + T, device=x.device)
        q = apply_rotary(
            self.q_proj(x).unflatten(-1, (self.num_heads, self.head_dim)), positions, self.rope_theta
        )
        k = apply_rotary(
            self.k_proj(x).unflatten(-1, (self.num_kv_heads, self.head_dim)), positions, self.rope_theta
        )
        v = self.v_proj(x).unflatten(-1, (self.num_kv_heads, self.head_dim))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, d]
        valid = (
            attention_mask[:, -T:].to(torch.bool)
            if attention_mask is not None
            else torch.ones(B, T, dtype=torch.bool, device=x.device)
        )

        last = cache[self.layer_idx] if cache is not None else None
        P = 0
        if isinstance(last, AttentionLayerState):
            P = last.key.shape[2]
            k = torch.cat([last.key.to(k.dtype), k], dim=2)
            v = torch.cat([last.value.to(v.dtype), v], dim=2)
            valid = torch.cat([last.valid, valid], dim=1)
        if use_cache and cache is not None:
            keep = min(W - 1, P + T)
            cache[self.layer_idx] = AttentionLayerState(
                key=k[:, :, P + T - keep :].clone(),
                value=v[:, :, P + T - keep :].clone(),
                valid=valid[:, P + T - keep :].clone(),
            )

        all_valid = bool(valid.all())
        if P == 0 and T <= W and all_valid:
            o = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads
            )
        else:
            o = torch.cat(
                [self._block(q[:, :, s : s + W], k, v, valid, P + s) for s in range(0, T, W)],
                dim=2,
            )
        return self.o_proj(o.transpose(1, 2).flatten(-2))

    def _block(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, start: int
    ) -> torch.Tensor:
        """Queries at key-index start .. start+n-1 against the keys of their window (a band mask)."""
        W, n = self.window_size, q.shape[2]
        lo = max(0, start - W + 1)
        kb, vb, validb = k[:, :, lo : start + n], v[:, :, lo : start + n], valid[:, lo : start + n]
        qi = torch.arange(start, start + n, device=q.device)[:, None]
        kj = torch.arange(lo, start + n, device=q.device)[None, :]
        band = (kj <= qi) & (kj > qi - W)  # [n, m]
        # a padded query has no valid key; letting it see itself keeps softmax finite (its output is unused)
        mask = (band[None] & validb[:, None, :]) | (kj == qi)[None]  # [B, n, m]
        return F.scaled_dot_product_attention(
            q, kb, vb, attn_mask=mask[:, None], enable_gqa=self.num_kv_heads != self.num_heads
        )
