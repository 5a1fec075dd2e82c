"""Tiny configs and helpers for the model tests (hidden <= 64, T <= 64: the CPU path is a token loop)."""

from __future__ import annotations

import torch

from gdn2_model import GDN2Config


def tiny_config(**overrides) -> GDN2Config:
    """2 layers, hidden 64, 2 heads of K = V = 16; pass `attn=...` for a hybrid model."""
    kwargs = dict(
        vocab_size=97,
        hidden_size=64,
        num_hidden_layers=2,
        num_heads=2,
        head_dim=16,
        intermediate_size=96,
        eos_token_id=None,
        bos_token_id=None,
    )
    kwargs.update(overrides)
    return GDN2Config(**kwargs)


HYBRID = {"layers": [1], "num_heads": 4, "num_kv_heads": 2, "window_size": 6}


def tokens(batch: int, length: int, seed: int = 0, vocab: int = 97) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=gen)


def rel_err(ref: torch.Tensor, got: torch.Tensor) -> float:
    """Relative RMS error, the measure of the kernel tests."""
    ref, got = ref.double(), got.double()
    return float((ref - got).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12))
