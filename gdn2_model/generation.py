"""`generate()` support for models whose whole past is one constant-size `GDN2Cache`."""

from __future__ import annotations

import torch
from transformers.generation import utils as _generation_utils

from gdn2_model.cache import GDN2Cache

__all__ = ["RecurrentGeneration"]

# generate() keeps the cache under "past_key_values" in transformers 5.17 and under "cache" in 5.24
_GENERATE_CACHE_KEY = getattr(_generation_utils, "ALL_CACHE_NAMES", ["past_key_values"])[0]


class RecurrentGeneration:
    """`generate()` plumbing for a model whose whole past is one `GDN2Cache` (constant size).

    transformers creates a `DynamicCache` for ordinary models and names it `past_key_values` (5.17) or
    `cache` (5.24); we opt out of both and hand our cache from each output to the next input ourselves.
    """

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values: GDN2Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = True,
        next_sequence_length: int | None = None,
        cache: GDN2Cache | None = None,
        logits_to_keep: int | None = None,
        **kwargs,
    ) -> dict:
        past = past_key_values if past_key_values is not None else cache
        if use_cache and past is None:
            past = GDN2Cache(self.config.num_hidden_layers)
        inputs: dict = {"past_key_values": past, "use_cache": use_cache, "attention_mask": attention_mask}
        seen = past.seen_tokens if past is not None else 0
        if inputs_embeds is not None and seen == 0:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            if seen > 0:
                new = next_sequence_length if next_sequence_length is not None else input_ids.shape[1] - seen
                input_ids = input_ids[:, -max(new, 1) :]
            inputs["input_ids"] = input_ids.contiguous()
        # only the last position's logits are needed to pick the next token
        inputs["logits_to_keep"] = 1 if logits_to_keep is None else logits_to_keep
        return inputs

    def _update_model_kwargs_for_generation(
        self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1
    ):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs.pop("cache", None)
        model_kwargs.pop("past_key_values", None)
        # the name generate() looks under when it reorders caches for beam search
        if outputs.cache is not None:
            model_kwargs[_GENERATE_CACHE_KEY] = outputs.cache
        return model_kwargs

    def _reorder_cache(self, cache: GDN2Cache | None, beam_idx: torch.LongTensor) -> GDN2Cache | None:
        """Beam search: keep the states of the surviving beams (rows of every layer's state)."""
        return None if cache is None else cache.reorder_cache(beam_idx)
