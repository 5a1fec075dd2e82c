"""The decoding cache: everything a GDN-2 network must remember to continue a sequence.

Per GDN-2 layer: the recurrent state `S` [B, H, K, V] (float32) and the last `conv_size - 1` inputs of
each q/k/v conv. Per hybrid attention layer: the keys and values of the last `window - 1` tokens (RoPE
already applied) and which of them are real tokens (left padding is masked out). Its size is fixed by
the config and batch, never by how many tokens were read: that is what makes streaming prefill and
decoding after a 100k-token context cost constant memory.

It is deliberately not a `transformers.Cache`: that class's layout (a growing key/value list per layer)
and its name in `generate()` changed between transformers 5.17 and 5.24; our models hand this object
to `generate()` themselves (see `GDN2ForCausalLM`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AttentionLayerState", "GDN2Cache", "RecurrentLayerState"]


@dataclass
class RecurrentLayerState:
    """State of one GDN-2 layer: `recurrent_state` [B, H, K, V] float32, conv inputs [B, W-1, D] or None."""

    recurrent_state: torch.Tensor | None = None
    conv_state: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] | None = None


@dataclass
class AttentionLayerState:
    """Window of one sliding-window attention layer: key/value [B, H_kv, P, d], valid [B, P] (P < window)."""

    key: torch.Tensor
    value: torch.Tensor
    valid: torch.Tensor


LayerState = RecurrentLayerState | AttentionLayerState


class GDN2Cache:
    """Per-layer states plus the number of tokens read so far (positions for RoPE continue from it)."""

    is_compileable = False

    def __init__(self, num_layers: int) -> None:
        self.layers: list[LayerState | None] = [None] * num_layers
        self.seen_tokens = 0

    def __len__(self) -> int:
        # transformers and FLA read `len(cache) > 0` as "this cache already holds a prefix"
        return self.num_populated

    @property
    def num_populated(self) -> int:
        return sum(layer is not None for layer in self.layers)

    def __getitem__(self, layer_idx: int) -> LayerState | None:
        return self.layers[layer_idx]

    def __setitem__(self, layer_idx: int, state: LayerState) -> None:
        self.layers[layer_idx] = state

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def batch_size(self) -> int | None:
        for layer in self.layers:
            for t in _tensors(layer):
                return t.shape[0]
        return None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> GDN2Cache:
        """Select batch rows (beam search, dropping finished sequences); returns self."""
        self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))
        return self

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GDN2Cache:
        """Move states; the recurrent state stays float32 whatever `dtype` says."""

        def move(t: torch.Tensor) -> torch.Tensor:
            keep_fp32 = t.dtype == torch.float32 or t.dtype == torch.bool
            return t.to(device=device, dtype=None if keep_fp32 or dtype is None else dtype)

        self._map(move)
        return self

    def nbytes(self) -> int:
        """Bytes held: constant in the number of tokens read."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in _tensors(layer))

    def _map(self, fn) -> None:
        for i, layer in enumerate(self.layers):
            if isinstance(layer, RecurrentLayerState):
                conv = None
                if layer.conv_state is not None:
                    conv = tuple(None if c is None else fn(c) for c in layer.conv_state)
                rs = None if layer.recurrent_state is None else fn(layer.recurrent_state)
                self.layers[i] = RecurrentLayerState(recurrent_state=rs, conv_state=conv)
            elif isinstance(layer, AttentionLayerState):
                self.layers[i] = AttentionLayerState(fn(layer.key), fn(layer.value), fn(layer.valid))


def _tensors(layer: LayerState | None) -> list[torch.Tensor]:
    if isinstance(layer, RecurrentLayerState):
        out = [] if layer.recurrent_state is None else [layer.recurrent_state]
        return out + [c for c in (layer.conv_state or ()) if c is not None]
    if isinstance(layer, AttentionLayerState):
        return [layer.key, layer.value, layer.valid]
    return []
