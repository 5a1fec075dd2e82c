"""Load GDN-2 weights trained with FLA or with the paper's reference code (lit_gpt) into our models.

Key mapping (ours on the left; `{i}` a layer index, `<mixer>` any GDN-2 layer parameter below):

    ours (= FLA models, fla.models.*)        paper reference (lit_gpt GPT)
    model.embeddings.weight                  transformer.wte.weight
    model.layers.{i}.attn_norm.weight        transformer.h.{i}.norm_1.weight
    model.layers.{i}.attn.<mixer>            transformer.h.{i}.attn.<mixer>
    model.layers.{i}.mlp_norm.weight         transformer.h.{i}.norm_2.weight
    model.layers.{i}.mlp.gate_proj.weight    transformer.h.{i}.mlp.swiglu.w1.weight
    model.layers.{i}.mlp.up_proj.weight      transformer.h.{i}.mlp.swiglu.w2.weight
    model.layers.{i}.mlp.down_proj.weight    transformer.h.{i}.mlp.swiglu.w3.weight
    model.norm.weight                        transformer.ln_f.weight
    lm_head.weight                           lm_head.weight

GDN-2 mixer parameters (identical names and shapes in FLA's `GatedDeltaNet2` layer and the reference):
`q_proj/k_proj/v_proj.weight`, `{q,k,v}_conv1d.weight` [D, 1, 4] (+ `.bias` with conv_bias),
`f_proj.0.weight` [V, hidden], `f_proj.1.weight` [key_dim, V], `b_proj.weight`, `w_proj.weight`,
`A_log` [H], `dt_bias` [key_dim], `g_proj.0.weight`, `g_proj.1.weight`, `g_proj.1.bias`,
`o_norm.weight` [V], `o_proj.weight`.
Hybrid attention layers: FLA's `Attention` uses our names (`q_proj`, `k_proj`, `v_proj`, `o_proj`); the
reference's fused `attn.attn.weight` (grouped [q.., k, v] per kv head) is split, `attn.proj` -> `o_proj`.

The output gate differs by source: FLA's layer uses sigmoid (`gate_act="sigmoid"`), the reference a
swish gate (`gate_act="swish"`); `norm_eps` is 1e-5 in both layers. The config is not converted: build a
`GDN2Config` with the same sizes and pass it.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from gdn2_model.configuration_gdn2 import GDN2Config

__all__ = ["convert_state_dict", "load_converted"]

_LITGPT_RULES = [
    (r"^transformer\.wte\.", "model.embeddings."),
    (r"^transformer\.ln_f\.", "model.norm."),
    (r"^transformer\.h\.(\d+)\.norm_1\.", r"model.layers.\1.attn_norm."),
    (r"^transformer\.h\.(\d+)\.norm_2\.", r"model.layers.\1.mlp_norm."),
    (r"^transformer\.h\.(\d+)\.mlp\.swiglu\.w1\.", r"model.layers.\1.mlp.gate_proj."),
    (r"^transformer\.h\.(\d+)\.mlp\.swiglu\.w2\.", r"model.layers.\1.mlp.up_proj."),
    (r"^transformer\.h\.(\d+)\.mlp\.swiglu\.w3\.", r"model.layers.\1.mlp.down_proj."),
    (r"^transformer\.h\.(\d+)\.attn\.proj\.", r"model.layers.\1.attn.o_proj."),
    (r"^transformer\.h\.(\d+)\.attn\.", r"model.layers.\1.attn."),
]
_FUSED_QKV = re.compile(r"^model\.layers\.(\d+)\.attn\.attn\.(weight|bias)$")


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], config: GDN2Config, source: str = "fla"
) -> dict[str, torch.Tensor]:
    """Rename (and split, for fused qkv) a foreign state dict into our key space.

    Args:
        state_dict: the checkpoint's tensors.
        config: our config with the checkpoint's sizes (attention heads are needed to split fused qkv).
        source: "fla" (FLA models or a bare FLA `GatedDeltaNet2` layer: names already match) or
            "litgpt" (the paper's reference `GPT`).

    Returns:
        A new dict keyed by our parameter names.
    """
    if source == "fla":
        # FLA's module tree is ours; a bare `model.` prefix-less backbone dump is accepted as well
        out = {}
        for key, value in state_dict.items():
            out[key if key.startswith(("model.", "lm_head.")) else f"model.{key}"] = value
        return out
    if source != "litgpt":
        raise ValueError(f"source={source!r} is unknown; choose 'fla' or 'litgpt'")
    out = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _LITGPT_RULES:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        fused = _FUSED_QKV.match(new)
        if fused:
            out.update(_split_fused_qkv(int(fused.group(1)), fused.group(2), value, config))
        else:
            out[new] = value
    return out


def _split_fused_qkv(
    layer: int, kind: str, fused: torch.Tensor, config: GDN2Config
) -> dict[str, torch.Tensor]:
    """lit_gpt packs rows per kv group as [q x (heads/kv), k, v], each head_size rows."""
    if config.attn is None:
        raise ValueError(f"layer {layer} holds fused attention weights but config.attn is None")
    heads = config.attn["num_heads"] or config.num_heads
    groups = config.attn["num_kv_heads"] or heads
    head = config.hidden_size // heads
    per = heads // groups
    grouped = fused.reshape(groups, per + 2, head, *fused.shape[1:])
    prefix = f"model.layers.{layer}.attn"
    return {
        f"{prefix}.q_proj.{kind}": grouped[:, :per].reshape(heads * head, *fused.shape[1:]),
        f"{prefix}.k_proj.{kind}": grouped[:, per].reshape(groups * head, *fused.shape[1:]),
        f"{prefix}.v_proj.{kind}": grouped[:, per + 1].reshape(groups * head, *fused.shape[1:]),
    }


def load_converted(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "fla") -> nn.Module:
    """Convert and load strictly; a missing, unexpected or mis-shaped key fails naming it (one line)."""
    converted = convert_state_dict(state_dict, model.config, source=source)
    own = model.state_dict()
    if not any(k.startswith("model.") for k in own):
        # a bare backbone (GDN2Model): its keys have no `model.` prefix and there is no head
        converted = {
            k.removeprefix("model."): v for k, v in converted.items() if not k.startswith("lm_head.")
        }
    if "lm_head.weight" in own and "lm_head.weight" not in converted and model.config.tie_word_embeddings:
        converted["lm_head.weight"] = converted.get("model.embeddings.weight")
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{key}: checkpoint shape {tuple(value.shape)} != model shape {tuple(own[key].shape)}"
            )
    model.load_state_dict(converted, strict=True)
    return model
