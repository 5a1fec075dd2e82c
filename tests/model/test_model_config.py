"""GDN2Config: clear construction errors, FLA-compatible fields, Auto-class registration."""

from __future__ import annotations

import pytest
from model_testutils import tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering

from gdn2_model import GDN2Config, GDN2ForCausalLM, GDN2ForReader, GDN2Model


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        pytest.param(
            {"num_heads": 3, "num_v_heads": 4}, "num_v_heads=4 must be a multiple", id="gva-not-dividing"
        ),
        pytest.param({"expand_v": 0.3}, "expand_v=0.3", id="expand_v-not-integer"),
        pytest.param({"gate_act": "relu"}, "gate_act='relu' is unknown", id="unknown-gate-act"),
        pytest.param({"hidden_act": "gelu"}, "hidden_act='gelu' is unknown", id="unknown-mlp-act"),
        pytest.param({"attn": {"layers": [2]}}, r"index 2 is out of range \[0, 2\)", id="hybrid-index-high"),
        pytest.param({"attn": {"layers": [-1]}}, "index -1 is out of range", id="hybrid-index-negative"),
        pytest.param(
            {"attn": {"layers": [0], "num_heads": 5}}, "not divisible by attn num_heads=5", id="attn-heads"
        ),
        pytest.param(
            {"attn": {"layers": [0], "num_heads": 4, "num_kv_heads": 3}}, "num_kv_heads=3", id="kv-heads"
        ),
        pytest.param({"attn": {"layers": [0], "window_size": 0}}, "window_size=0", id="window"),
        pytest.param({"attn": {"layers": [0], "windw": 4}}, "unknown keys", id="attn-typo"),
        pytest.param({"head_dim": 0}, "head_dim=0 must be a positive integer", id="head-dim-zero"),
    ],
)
def test_config_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_config_round_trip_and_derived_sizes(tmp_path):
    cfg = tiny_config(expand_v=2.0, attn={"layers": [0], "window_size": 8})
    assert (cfg.head_v_dim, cfg.value_dim) == (32, 64)
    assert cfg.attn["rope_theta"] == 10000.0  # defaults filled in
    cfg.save_pretrained(tmp_path)
    again = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(again, GDN2Config)
    drop = {"_name_or_path"}
    assert {k: v for k, v in again.to_dict().items() if k not in drop} == {
        k: v for k, v in cfg.to_dict().items() if k not in drop
    }


def test_default_intermediate_size_rounds_to_256():
    assert GDN2Config(hidden_size=2048).mlp_intermediate_size == 5632


def test_auto_classes_build_our_models():
    cfg = tiny_config()
    assert isinstance(AutoModel.from_config(cfg), GDN2Model)
    assert isinstance(AutoModelForCausalLM.from_config(cfg), GDN2ForCausalLM)
    assert isinstance(AutoModelForQuestionAnswering.from_config(cfg), GDN2ForReader)


def test_an_fla_style_config_dict_loads():
    fla_style = {
        "model_type": "gdn2",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_heads": 2,
        "head_dim": 16,
        "vocab_size": 97,
        "attn_mode": "chunk",
        "fuse_norm": True,
        "fuse_swiglu": True,
        "use_gate": True,
        "attn": {"layers": [1], "num_heads": 4, "num_kv_heads": 2, "window_size": 8, "rope_theta": 1e4},
    }
    cfg = GDN2Config.from_dict(fla_style)
    assert cfg.is_attention_layer(1) and not cfg.is_attention_layer(0)
    assert cfg.attn["qkv_bias"] is False
