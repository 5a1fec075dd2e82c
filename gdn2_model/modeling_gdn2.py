"""GDN-2 networks as transformers models: the backbone, a causal LM and an extractive reader.

    GDN2Model        embeddings -> [pre-norm block: mixer (GDN-2 or window attention) + SwiGLU] x L -> norm
    GDN2ForCausalLM  + lm_head; GenerationMixin with the recurrent `GDN2Cache`
    GDN2ForReader    + qa_outputs (start/end logit per token), optional lm_head, same backbone

Module names follow FLA's models (`model.embeddings`, `model.layers.{i}.attn_norm/attn/mlp_norm/mlp`,
`model.norm`, `lm_head`), so FLA checkpoints map by name (see `gdn2_model/fla_compat.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.generation import GenerationMixin
from transformers.utils import ModelOutput

from gdn2_model.attention import SlidingWindowAttention
from gdn2_model.cache import GDN2Cache
from gdn2_model.configuration_gdn2 import GDN2Config
from gdn2_model.generation import RecurrentGeneration
from gdn2_model.layer import GatedDeltaNet2, RMSNorm, ShortConvolution, decay_init, use_fused_ops
from gdn2_model.prompt import align_end_logits

__all__ = [
    "GDN2CausalLMOutput",
    "GDN2ForCausalLM",
    "GDN2ForReader",
    "GDN2Model",
    "GDN2ModelOutput",
    "GDN2PreTrainedModel",
    "ReaderOutput",
]


class _CacheAlias:
    """`past_key_values` as a read-only alias of the `cache` field.

    transformers 5.24 renames a `past_key_values=` field of every `ModelOutput` to `cache` (5.17 does not),
    so the field is named `cache` on both and the old name stays readable.
    """

    @property
    def past_key_values(self) -> GDN2Cache | None:
        return self.cache


@dataclass
class GDN2ModelOutput(_CacheAlias, ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    cache: GDN2Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class GDN2CausalLMOutput(_CacheAlias, ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: GDN2Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class ReaderOutput(_CacheAlias, ModelOutput):
    """Reader output: `start_logits`/`end_logits` [B, T] float32; `logits` [B, T', vocab] with an LM head.

    The cache is `.cache` (also readable as `.past_key_values`).
    """

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: GDN2Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class GDN2MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)); the product is one fused kernel in CUDA inference."""

    def __init__(self, hidden_size: int, intermediate_size: int, fused_ops: bool = True) -> None:
        super().__init__()
        self.fused_ops = fused_ops
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_fused_ops(self.fused_ops, x):
            from gdn2_kernels.layer_ops import silu_mul

            return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class GDN2Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then + mlp(norm(.))."""

    def __init__(self, config: GDN2Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.attn_norm = RMSNorm(config.hidden_size, eps=config.norm_eps)
        if config.is_attention_layer(layer_idx):
            a = config.attn
            self.attn = SlidingWindowAttention(
                hidden_size=config.hidden_size,
                num_heads=a["num_heads"] or config.num_heads,
                num_kv_heads=a["num_kv_heads"],
                window_size=a["window_size"],
                rope_theta=a["rope_theta"],
                qkv_bias=a["qkv_bias"],
                layer_idx=layer_idx,
            )
        else:
            self.attn = GatedDeltaNet2(
                hidden_size=config.hidden_size,
                head_dim=config.head_dim,
                num_heads=config.num_heads,
                num_v_heads=config.num_v_heads,
                expand_v=config.expand_v,
                use_short_conv=config.use_short_conv,
                conv_size=config.conv_size,
                conv_bias=config.conv_bias,
                allow_neg_eigval=config.allow_neg_eigval,
                gate_act=config.gate_act,
                norm_eps=config.norm_eps,
                fused_ops=config.fused_ops,
                layer_idx=layer_idx,
            )
        self.mlp_norm = RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.mlp = GDN2MLP(config.hidden_size, config.mlp_intermediate_size, fused_ops=config.fused_ops)
        # the two projections that write into the residual stream (scaled init, see `_init_weights`)
        for proj in (self.attn.o_proj, self.mlp.down_proj):
            proj.residual_out = True

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        use_cache: bool = False,
        cu_seqlens: torch.Tensor | None = None,
        position_offset: int = 0,
    ) -> torch.Tensor:
        mixer_kwargs = {"attention_mask": attention_mask, "cache": cache, "use_cache": use_cache}
        if isinstance(self.attn, SlidingWindowAttention):
            mixer_kwargs["position_offset"] = position_offset
        h = hidden_states + self.attn(self.attn_norm(hidden_states), cu_seqlens=cu_seqlens, **mixer_kwargs)
        return h + self.mlp(self.mlp_norm(h))


class GDN2PreTrainedModel(PreTrainedModel):
    config_class = GDN2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GDN2Block"]
    _is_stateful = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) linears/embeddings; residual outputs scaled by 1/sqrt(2 * layers).

        The GPT-2 residual scaling keeps the residual stream's variance flat over depth at init; gates and
        decays use the mixer's own Mamba-style init. All through `transformers.initialization`, which skips
        tensors already loaded by `from_pretrained`.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # tagged on the Linear by the block: transformers (5.24, custom code) marks parameterless parents
            # (blocks, MLPs, attention wrappers) initialised without calling this, so they cannot rescale it
            if getattr(module, "residual_out", False):
                std = std / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, ShortConvolution):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, GatedDeltaNet2):
            A_log, dt_bias = decay_init(module.A_log, module.dt_bias)
            init.copy_(module.A_log, A_log)
            init.copy_(module.dt_bias, dt_bias)
        elif (
            hasattr(module, "weight") and isinstance(module.weight, nn.Parameter) and module.weight.dim() == 1
        ):
            init.ones_(module.weight)


class GDN2Model(GDN2PreTrainedModel):
    """The backbone: token embeddings through the blocks to the final norm."""

    def __init__(self, config: GDN2Config) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([GDN2Block(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: GDN2Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cu_seqlens: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        **kwargs,
    ) -> GDN2ModelOutput:
        """Run the blocks. `cache` is accepted as another name of `past_key_values` (transformers >= 5.24).

        `attention_mask` [B, T_total] (1 = token, 0 = left padding) and `cu_seqlens` ([N+1], packs N
        sequences into B = 1) are the two ways to batch sequences of different lengths.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        past_key_values = past_key_values if past_key_values is not None else cache
        if past_key_values is not None and not isinstance(past_key_values, GDN2Cache):
            raise TypeError(f"past_key_values must be a GDN2Cache, got {type(past_key_values).__name__}")
        if use_cache is None:
            # packed batches are for training and scoring: no cache unless asked (which then fails clearly)
            use_cache = self.config.use_cache and not self.training and cu_seqlens is None
        hidden_states = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = hidden_states.shape[:2]
        if cu_seqlens is not None:
            _check_cu_seqlens(cu_seqlens, B, T, use_cache or past_key_values is not None, attention_mask)
        if attention_mask is not None and bool(attention_mask[:, -T:].all()):
            attention_mask = None
        if use_cache and past_key_values is None:
            past_key_values = GDN2Cache(self.config.num_hidden_layers)
        offset = past_key_values.seen_tokens if past_key_values is not None else 0

        all_hidden = [] if output_hidden_states else None
        checkpointing = (
            self.gradient_checkpointing and self.training and torch.is_grad_enabled() and not use_cache
        )
        for layer in self.layers:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    layer.__call__, hidden_states, attention_mask, None, False, cu_seqlens, offset
                )
            else:
                hidden_states = layer(
                    hidden_states, attention_mask, past_key_values, use_cache, cu_seqlens, offset
                )
        hidden_states = self.norm(hidden_states)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        if use_cache:
            past_key_values.seen_tokens += T
        return _finish(
            GDN2ModelOutput(
                last_hidden_state=hidden_states,
                cache=past_key_values if use_cache else None,
                hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            ),
            return_dict,
        )


def _finish(output: ModelOutput, return_dict: bool | None):
    """transformers convention: `return_dict=False` asks for a plain tuple of the non-None fields."""
    return output.to_tuple() if return_dict is False else output


def _check_cu_seqlens(
    cu_seqlens: torch.Tensor, batch: int, length: int, with_cache: bool, attention_mask: torch.Tensor | None
) -> None:
    if batch != 1:
        raise ValueError(f"cu_seqlens packs sequences into batch 1, got batch {batch}")
    if (
        cu_seqlens.dim() != 1
        or cu_seqlens.numel() < 2
        or int(cu_seqlens[0]) != 0
        or int(cu_seqlens[-1]) != length
    ):
        raise ValueError(
            f"cu_seqlens must run from 0 to the packed length {length}, got {cu_seqlens.tolist()}"
        )
    if bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {cu_seqlens.tolist()}")
    if with_cache:
        raise ValueError("cu_seqlens (packed sequences) cannot be combined with a cache; use use_cache=False")
    if attention_mask is not None:
        raise ValueError("pass either cu_seqlens or attention_mask, not both")


def _lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy in float32; labels -100 are ignored."""
    shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)


def _ignore_outside(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Positions outside [0, length) become -100, the index cross entropy ignores."""
    return positions.masked_fill((positions < 0) | (positions >= length), -100)


def _keep(hidden: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    return hidden if not logits_to_keep else hidden[:, -logits_to_keep:]


class GDN2ForCausalLM(GDN2PreTrainedModel, RecurrentGeneration, GenerationMixin):
    """Causal LM; `logits_to_keep=k` computes the LM head on the last k positions only (0 = all)."""

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}

    def __init__(self, config: GDN2Config) -> None:
        super().__init__(config)
        self.model = GDN2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: GDN2Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        cu_seqlens: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        **kwargs,
    ) -> GDN2CausalLMOutput:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            past_key_values=past_key_values if past_key_values is not None else cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
        )
        hidden = out.last_hidden_state
        logits = self.lm_head(_keep(hidden, 0 if labels is not None else logits_to_keep))
        loss = _lm_loss(logits, labels) if labels is not None else None
        result = GDN2CausalLMOutput(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states
        )
        return _finish(result, return_dict)


class GDN2ForReader(GDN2PreTrainedModel, RecurrentGeneration, GenerationMixin):
    """Extractive reader: per-token start/end logits on the backbone; an LM head if `config.reader_lm_head`.

    Loss (when positions are given) is the mean of start and end cross-entropies over the sequence, plus
    the LM loss when `labels` are given and the head exists.
    """

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}

    def __init__(self, config: GDN2Config) -> None:
        super().__init__(config)
        self.model = GDN2Model(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2, bias=True)
        self.question_match = nn.Embedding(2, config.hidden_size) if config.reader_question_match else None
        self.lm_head = (
            nn.Linear(config.hidden_size, config.vocab_size, bias=False) if config.reader_lm_head else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embeddings = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: GDN2Cache | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        cu_seqlens: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        question_match: torch.LongTensor | None = None,
        **kwargs,
    ) -> ReaderOutput:
        if labels is not None and self.lm_head is None:
            raise ValueError("labels given but this reader has no LM head (set config.reader_lm_head=True)")
        if self.question_match is not None:
            # no flags given (e.g. generation) reads as "no token matches": training always saw the feature
            if inputs_embeds is None:
                inputs_embeds = self.model.embeddings(input_ids)
            if question_match is None:
                question_match = torch.zeros(
                    inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device
                )
            inputs_embeds = inputs_embeds + self.question_match(question_match).to(inputs_embeds.dtype)
            input_ids = None
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            past_key_values=past_key_values if past_key_values is not None else cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
        )
        hidden = out.last_hidden_state
        span = self.qa_outputs(hidden).float()  # [B, T, 2]
        start_logits, end_logits = span[..., 0], span[..., 1]
        logits = None
        if self.lm_head is not None:
            logits = self.lm_head(_keep(hidden, 0 if labels is not None else logits_to_keep))
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start_logits.shape[1]
            # positions outside [0, T) mean "no answer here": the row is ignored (index -100)
            s, e = (_ignore_outside(p.to(start_logits.device), T) for p in (start_positions, end_positions))
            end_scores = align_end_logits(end_logits) if self.config.reader_end_shift else end_logits
            loss = (
                F.cross_entropy(start_logits, s, ignore_index=-100)
                + F.cross_entropy(end_scores, e, ignore_index=-100)
            ) / 2
        if labels is not None:
            lm = _lm_loss(logits, labels)
            loss = lm if loss is None else loss + lm
        result = ReaderOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            logits=logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
        )
        return _finish(result, return_dict)
