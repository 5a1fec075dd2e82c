"""A same-size causal transformer reader (SDPA attention, rotary positions): the benchmark's baseline.

Same embedding, width, depth, SwiGLU MLP and span head as the GDN-2 reader; only the token mixer
differs, so quality, speed and memory compare the mixers. Used by training and benchmarks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BaselineConfig:
    vocab_size: int = 16384
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_heads: int = 6
    intermediate_size: int = 1024
    rope_theta: float = 500000.0
    norm_eps: float = 1e-6
    reader_question_match: bool = False  # as GDN2Config's: the exact-match feature
    reader_end_shift: bool = False  # as GDN2Config's: end scores read one token later


@dataclass
class SpanOutput:
    start_logits: torch.Tensor  # [B, T]
    end_logits: torch.Tensor  # [B, T]


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    # x: [B, H, T, D]; rotate pairs (even, odd halves) by position-dependent angles
    _, _, t, d = x.shape
    inv = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv[None]  # [T, D/2]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _Block(nn.Module):
    def __init__(self, c: BaselineConfig) -> None:
        super().__init__()
        self.c = c
        self.norm1 = nn.RMSNorm(c.hidden_size, eps=c.norm_eps)
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=False)
        self.o = nn.Linear(c.hidden_size, c.hidden_size, bias=False)
        self.norm2 = nn.RMSNorm(c.hidden_size, eps=c.norm_eps)
        self.gate_up = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.down = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        nh = self.c.num_heads
        q, k, v = (
            self.qkv(self.norm1(x)).view(b, t, 3, nh, h // nh).permute(2, 0, 3, 1, 4)
        )  # 3 x [B, nh, T, hd]
        q, k = _rope(q, self.c.rope_theta), _rope(k, self.c.rope_theta)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, h))
        g, u = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(g) * u)


class TransformerReader(nn.Module):
    """Causal SDPA transformer with the reader's span head (start/end logits per token)."""

    def __init__(self, c: BaselineConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.num_hidden_layers))
        self.norm = nn.RMSNorm(c.hidden_size, eps=c.norm_eps)
        self.span = nn.Linear(c.hidden_size, 2)
        self.question_match = nn.Embedding(2, c.hidden_size) if c.reader_question_match else None
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, question_match: torch.Tensor | None = None) -> SpanOutput:
        x = self.embed(input_ids)
        if self.question_match is not None:
            if question_match is None:  # as GDN2ForReader: no flags read as "no token matches"
                question_match = torch.zeros_like(input_ids)
            x = x + self.question_match(question_match)
        for blk in self.blocks:
            x = blk(x)
        s, e = self.span(self.norm(x)).float().unbind(-1)
        return SpanOutput(s, e)
