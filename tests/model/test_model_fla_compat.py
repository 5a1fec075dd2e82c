"""Checkpoints from FLA and from the paper's reference (lit_gpt) load through the documented key mapping."""

from __future__ import annotations

import pytest
import torch
from model_testutils import tiny_config, tokens

from gdn2_model import GDN2ForCausalLM, GDN2Model
from gdn2_model.fla_compat import convert_state_dict, load_converted
from gdn2_model.layer import GatedDeltaNet2

HYBRID = {"layers": [1], "num_heads": 4, "num_kv_heads": 2, "window_size": 8}


def _to_litgpt(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Write our weights the way the reference's GPT names them (the inverse of the documented mapping)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("model.embeddings.", "transformer.wte.").replace("model.norm.", "transformer.ln_f.")
        k = k.replace("model.layers.", "transformer.h.")
        k = k.replace(".attn_norm.", ".norm_1.").replace(".mlp_norm.", ".norm_2.")
        k = k.replace(".mlp.gate_proj.", ".mlp.swiglu.w1.").replace(".mlp.up_proj.", ".mlp.swiglu.w2.")
        k = k.replace(".mlp.down_proj.", ".mlp.swiglu.w3.")
        out[k] = v
    heads, groups = HYBRID["num_heads"], HYBRID["num_kv_heads"]
    head = cfg.hidden_size // heads
    for i in HYBRID["layers"]:
        p = f"transformer.h.{i}.attn."
        q = out.pop(p + "q_proj.weight").reshape(groups, heads // groups, head, -1)
        k_ = out.pop(p + "k_proj.weight").reshape(groups, 1, head, -1)
        v_ = out.pop(p + "v_proj.weight").reshape(groups, 1, head, -1)
        out[p + "attn.weight"] = torch.cat([q, k_, v_], dim=1).reshape(-1, cfg.hidden_size)
        out[p + "proj.weight"] = out.pop(p + "o_proj.weight")
    return out


def test_litgpt_checkpoint_loads_and_gives_identical_outputs():
    cfg = tiny_config(attn=HYBRID, gate_act="swish")
    torch.manual_seed(0)
    src = GDN2ForCausalLM(cfg).eval()
    foreign = _to_litgpt(src.state_dict(), cfg)
    assert "transformer.h.1.attn.attn.weight" in foreign and "transformer.h.0.attn.A_log" in foreign
    torch.manual_seed(1)
    dst = load_converted(GDN2ForCausalLM(cfg).eval(), foreign, source="litgpt")
    ids = tokens(1, 20)
    with torch.no_grad():
        torch.testing.assert_close(dst(ids).logits, src(ids).logits, rtol=0, atol=0)


def test_fla_names_are_ours_for_models_backbones_and_layers():
    cfg = tiny_config()
    torch.manual_seed(0)
    src = GDN2ForCausalLM(cfg)
    backbone = {k.removeprefix("model."): v for k, v in src.state_dict().items() if k.startswith("model.")}
    assert convert_state_dict(backbone, cfg, source="fla").keys() == {f"model.{k}" for k in backbone}
    dst = load_converted(GDN2Model(cfg), backbone, source="fla")
    torch.testing.assert_close(dst.embeddings.weight, src.model.embeddings.weight)
    # a layer's state dict is FLA's GatedDeltaNet2 state dict, key for key
    layer = GatedDeltaNet2(hidden_size=64, head_dim=16, num_heads=2)
    assert set(layer.state_dict()) == {
        "q_proj.weight", "k_proj.weight", "v_proj.weight", "q_conv1d.weight", "k_conv1d.weight",
        "v_conv1d.weight", "f_proj.0.weight", "f_proj.1.weight", "b_proj.weight", "w_proj.weight",
        "A_log", "dt_bias", "g_proj.0.weight", "g_proj.1.weight", "g_proj.1.bias", "o_norm.weight",
        "o_proj.weight",
    }  # fmt: skip
    assert layer.q_conv1d.weight.shape == (32, 1, 4)


def test_conversion_errors_name_the_problem():
    cfg = tiny_config()
    model = GDN2ForCausalLM(cfg)
    sd = model.state_dict()
    with pytest.raises(ValueError, match="source='hf' is unknown"):
        convert_state_dict(sd, cfg, source="hf")
    partial = {k: v for k, v in sd.items() if k != "model.norm.weight"}
    with pytest.raises(ValueError, match=r"missing \['model.norm.weight'\]"):
        load_converted(model, partial)
    bad = dict(sd, **{"model.layers.0.attn.A_log": torch.zeros(3)})
    with pytest.raises(ValueError, match="A_log: checkpoint shape"):
        load_converted(model, bad)
