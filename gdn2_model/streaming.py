"""Streaming prefill (a context of any length in fixed segments, carrying the `GDN2Cache`) and graph decode.

The cache is constant-size (recurrent state, conv tails, attention windows), so peak memory follows the
segment length, not the context. Outputs equal one pass over the whole input (tested), because every
layer continues exactly from the state the previous segment left.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

import torch

from gdn2_model.cache import GDN2Cache, RecurrentLayerState

__all__ = ["CudaGraphDecoder", "streaming_prefill"]

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
    question_match: torch.LongTensor | None = None,
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
        question_match: [B, T] reader feature (`GDN2ForReader`), cut into the same segments as `input_ids`.

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
            **({} if question_match is None else {"question_match": question_match[:, start:end]}),
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


def _clone_cache(cache: GDN2Cache) -> GDN2Cache:
    """A deep copy of a cache of GDN-2 layers only (checked by `CudaGraphDecoder`)."""
    out = GDN2Cache(len(cache.layers))
    out.seen_tokens = cache.seen_tokens
    for i, layer in enumerate(cache.layers):
        conv = None if layer.conv_state is None else tuple(c.clone() for c in layer.conv_state)
        out.layers[i] = RecurrentLayerState(recurrent_state=layer.recurrent_state.clone(), conv_state=conv)
    return out


def _copy_cache(dst: GDN2Cache, src: GDN2Cache) -> None:
    for d, s in zip(dst.layers, src.layers, strict=True):
        d.recurrent_state.copy_(s.recurrent_state)
        for dc, sc in zip(d.conv_state or (), s.conv_state or (), strict=True):
            dc.copy_(sc)
    dst.seen_tokens = src.seen_tokens


class CudaGraphDecoder:
    """One-token decode steps replayed from a CUDA graph (pure GDN-2 models, CUDA only).

    The cache has a fixed size and every decode write is in place (recurrent state in the kernel, conv
    tails by `copy_`), so the whole step (~70 small kernels per layer) can be captured once and replayed:
    the per-token cost becomes the GPU work, not Python and launch overhead. The decoder keeps its own copy
    of the cache, taken from `cache` at construction; read it back with `.cache`.

    Example:
        out = streaming_prefill(lm, ids)
        dec = CudaGraphDecoder(lm, out.past_key_values)
        logits = dec.step(next_ids)          # [B, 1, vocab]
    """

    def __init__(self, model: torch.nn.Module, cache: GDN2Cache, warmup: int = 2) -> None:
        for i, layer in enumerate(cache.layers):
            if not isinstance(layer, RecurrentLayerState):
                raise ValueError(
                    f"layer {i} is not a GDN-2 layer: graph-captured decode needs a pure GDN-2 model"
                )
        batch = cache.batch_size
        if batch is None or cache.seen_tokens == 0:
            raise ValueError(
                "CudaGraphDecoder needs a cache that has read at least one token (prefill first)"
            )
        device = cache.layers[0].recurrent_state.device
        if device.type != "cuda":
            raise ValueError(f"CudaGraphDecoder needs CUDA tensors, the cache is on {device}")
        self.model = model
        self.cache = _clone_cache(cache)
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        with torch.inference_mode():
            # compile / autotune the kernels outside the capture (this advances the copy; restored below)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._forward()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self._forward()
        _copy_cache(self.cache, cache)

    def _forward(self) -> torch.Tensor:
        out = self.model(input_ids=self.ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Feed [B, 1] tokens; returns the logits [B, 1, vocab] (a buffer overwritten by the next step)."""
        self.ids.copy_(input_ids)
        self.graph.replay()
        self.cache.seen_tokens += 1
        return self.logits
