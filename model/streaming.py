"""Streaming prefill: read a context of any length in fixed segments, carrying the `GDN2Cache`.

The cache is constant-size (recurrent state, conv tails, attention windows), so peak memory follows the
segment length, not the context. Outputs equal one pass over the whole input (tested), because every
layer continues exactly from the state the previous segment left.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

import torch

from model.cache import GDN2Cache

__all__ = ["streaming_prefill"]

# outputs that are [B, T] per token and small enough to keep whole
_PER_TOKEN_SMALL = ("start_logits", "end_logits")


@torch.no_grad()
def streaming_prefill(
    model: torch.nn.Module,
    input_ids: torch.LongTensor,
    segment_len: int = 8192,
    *,
    past_key_values: GDN2Cache | None = None,
    attention_mask: torch.Tensor | None = None,
    keep_all: bool = False,
):
    """Run `model` (GDN2Model / GDN2ForCausalLM / GDN2ForReader) over `input_ids` [B, T] segment by segment.

    Args:
        model: any of our models; called with `use_cache=True`.
        input_ids: [B, T] tokens.
        segment_len: tokens per call. Peak activation memory is set by this, not by T.
        past_key_values: a cache to continue from (e.g. a question already read); a new one otherwise.
        attention_mask: [B, cached + T] left-padding mask (1 = token) over the cached prefix and `input_ids`.
        keep_all: keep `logits` / `last_hidden_state` for every position (memory grows with T). By default
            only the last position is kept; `start_logits`/`end_logits` ([B, T]) are always kept whole.

    Returns:
        The model's output type, with per-token fields concatenated over segments and `past_key_values`
        holding the cache after the last token.
    """
    if segment_len < 1:
        raise ValueError(f"segment_len={segment_len} must be a positive integer")
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids must be [batch, tokens] with at least one token, got {tuple(input_ids.shape)}"
        )
    cache = past_key_values
    if cache is None:
        cache = GDN2Cache(model.config.num_hidden_layers)
    prefix = cache.seen_tokens
    if attention_mask is not None and tuple(attention_mask.shape) != (
        input_ids.shape[0],
        prefix + input_ids.shape[1],
    ):
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must cover the {prefix} cached and "
            f"{input_ids.shape[1]} new tokens of each of the {input_ids.shape[0]} rows"
        )
    T = input_ids.shape[1]
    extra = {}
    if not keep_all and "logits_to_keep" in inspect.signature(model.forward).parameters:
        # the LM head over a whole segment is [segment, vocab]: skip what would be thrown away
        extra["logits_to_keep"] = 1
    pieces: dict[str, list[torch.Tensor]] = {}
    out = None
    for start in range(0, T, segment_len):
        end = min(T, start + segment_len)
        mask = None
        if attention_mask is not None:
            # the layers need the mask of the segment and of everything before it (attention windows)
            mask = attention_mask[:, : prefix + end]
        out = model(
            input_ids=input_ids[:, start:end],
            attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        cache = out.cache
        for f in fields(out):
            value = getattr(out, f.name)
            if not isinstance(value, torch.Tensor) or value.dim() < 2 or f.name == "loss":
                continue
            if f.name in _PER_TOKEN_SMALL or keep_all:
                pieces.setdefault(f.name, []).append(value)
            else:
                pieces[f.name] = [value[:, -1:]]
    for name, parts in pieces.items():
        setattr(out, name, torch.cat(parts, dim=1))
    return out
