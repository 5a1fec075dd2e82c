"""GDN-2 models on CPU (tiny configs): fwd/bwd, cached decoding, generate(), padding, packing, save/load."""

from __future__ import annotations

import pytest
import torch
from model_testutils import HYBRID, tiny_config, tokens
from transformers import AutoModelForCausalLM

from gdn2_model import GDN2Cache, GDN2ForCausalLM, GDN2ForReader, GDN2Model

VARIANTS = [
    pytest.param({}, id="gdn2"),
    pytest.param({"attn": HYBRID}, id="hybrid"),
    pytest.param({"use_short_conv": False, "gate_act": "swish"}, id="noconv-swish"),
    pytest.param({"allow_neg_eigval": True, "expand_v": 2.0}, id="negeig-expandv"),
    pytest.param({"num_v_heads": 4}, id="gva"),
]


def _lm(seed: int = 0, **overrides) -> GDN2ForCausalLM:
    torch.manual_seed(seed)
    return GDN2ForCausalLM(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("overrides", VARIANTS)
def test_forward_backward_gives_every_parameter_a_finite_grad(overrides):
    model = _lm(**overrides).train()
    ids = tokens(2, 24)
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, 24, 97)
    assert 3.0 < out.loss.item() < 6.0  # ~ln(97) at init: neither collapsed nor exploded
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("overrides", VARIANTS[:2])
def test_prefill_then_token_by_token_decode_equals_one_pass(overrides):
    model = _lm(**overrides)
    ids = tokens(2, 20, seed=1)
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :12], use_cache=True)
        steps = [out.logits]
        cache = out.past_key_values
        for t in range(12, 20):
            out = model(ids[:, t : t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    assert cache.seen_tokens == 20
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides", VARIANTS[:2])
def test_generate_equals_manual_greedy_decoding_with_the_cache(overrides):
    model = _lm(**overrides)
    prompt = tokens(2, 9, seed=2)
    fed: list[int] = []
    hook = model.model.register_forward_pre_hook(
        lambda m, a, kw: fed.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        generated = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False
        )
    hook.remove()
    # the prompt once, then one token per step: the recurrent cache carries everything else
    assert fed == [9, 1, 1, 1, 1, 1]
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        seq, cache = prompt, out.past_key_values
        for _ in range(6):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
            out = model(nxt, past_key_values=cache, use_cache=True)
    assert torch.equal(generated, seq)


def _left_padded_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of a 14-token row and a 9-token row left-padded by 5; its mask; the short row alone."""
    a, b = tokens(1, 14, seed=3), tokens(1, 9, seed=4)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 5, dtype=torch.long), b], dim=1)])
    mask = torch.ones_like(batch)
    mask[1, :5] = 0
    return batch, mask, b


def test_left_padded_batch_equals_rows_run_alone():
    model = _lm(attn=HYBRID)
    batch, mask, b = _left_padded_pair()
    with torch.no_grad():
        both = model(batch, attention_mask=mask).logits
        alone = model(b).logits
        generated = model.generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False)
        generated_alone = model.generate(b, max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(both[1, 5:], alone[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(generated[1, 5:], generated_alone[0])


def test_left_padding_stays_out_of_the_state_with_conv_bias():
    model = _lm(conv_bias=True)
    with torch.no_grad():
        for conv in (m for m in model.modules() if m.__class__.__name__ == "ShortConvolution"):
            torch.nn.init.normal_(conv.bias, std=0.5)
    batch, mask, b = _left_padded_pair()
    with torch.no_grad():
        both = model(batch, attention_mask=mask).logits
        alone = model(b).logits
    torch.testing.assert_close(both[1, 5:], alone[0], rtol=1e-4, atol=1e-5)


def test_a_cache_passed_without_use_cache_is_read_not_written():
    model = _lm()
    with torch.no_grad():
        cache = model(tokens(1, 8), use_cache=True).cache
        before = [layer.recurrent_state.clone() for layer in cache.layers]
        step = model(tokens(1, 1, seed=9), past_key_values=cache, use_cache=False)
        assert step.cache is None
        again = model(tokens(1, 1, seed=9), past_key_values=cache, use_cache=False)
    for layer, state in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.recurrent_state, state)
    torch.testing.assert_close(again.logits, step.logits, rtol=0, atol=0)


@pytest.mark.parametrize("overrides", VARIANTS[:2])
def test_packed_varlen_equals_separate_runs(overrides):
    torch.manual_seed(0)
    model = GDN2ForReader(tiny_config(**overrides)).eval()
    seqs = [tokens(1, n, seed=10 + n) for n in (7, 13, 3)]
    cu = torch.tensor([0, 7, 20, 23])
    with torch.no_grad():
        packed = model(torch.cat(seqs, dim=1), cu_seqlens=cu)
        separate = [model(s) for s in seqs]
    torch.testing.assert_close(packed.start_logits, torch.cat([o.start_logits for o in separate], 1))
    torch.testing.assert_close(packed.end_logits, torch.cat([o.end_logits for o in separate], 1))


def test_packed_varlen_errors():
    model = GDN2Model(tiny_config()).eval()
    ids = tokens(1, 10)
    with pytest.raises(ValueError, match="from 0 to the packed length 10"):
        model(ids, cu_seqlens=torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match="cannot be combined with a cache"):
        model(ids, cu_seqlens=torch.tensor([0, 4, 10]), use_cache=True)
    with pytest.raises(ValueError, match="batch 1"):
        model(tokens(2, 10), cu_seqlens=torch.tensor([0, 4, 10]))


def test_save_load_round_trip_is_exact(tmp_path):
    model = _lm(attn=HYBRID)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(again, GDN2ForCausalLM)
    ids = tokens(2, 16, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_reader_heads_loss_and_round_trip(tmp_path):
    torch.manual_seed(0)
    reader = GDN2ForReader(tiny_config(reader_lm_head=True)).eval()
    ids = tokens(2, 16, seed=6)
    out = reader(ids, start_positions=torch.tensor([3, 5]), end_positions=torch.tensor([4, 9]), labels=ids)
    assert out.start_logits.shape == out.end_logits.shape == (2, 16)
    assert out.start_logits.dtype == torch.float32
    assert out.logits.shape == (2, 16, 97)
    assert torch.isfinite(out.loss)
    reader.save_pretrained(tmp_path)
    again = GDN2ForReader.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).start_logits, reader(ids).start_logits, rtol=0, atol=0)
    # positions outside the sequence ignore the row: the loss is that of the other row alone
    pos = dict(start_positions=torch.tensor([3, 16]), end_positions=torch.tensor([4, -1]))
    with torch.no_grad():
        one_ignored = reader(ids, **pos).loss
        first_alone = reader(ids[:1], start_positions=torch.tensor([3]), end_positions=torch.tensor([4])).loss
    torch.testing.assert_close(one_ignored, first_alone)
    no_head = GDN2ForReader(tiny_config())
    assert no_head.lm_head is None and no_head(ids).logits is None
    with pytest.raises(ValueError, match="no LM head"):
        no_head(ids, labels=ids)


def test_cache_is_constant_size_and_reorders():
    model = _lm(attn=HYBRID)
    with torch.no_grad():
        short = model(tokens(2, 8), use_cache=True).past_key_values
        long = model(tokens(2, 40), use_cache=True).past_key_values
    assert isinstance(long, GDN2Cache) and long.nbytes() == short.nbytes()
    before = long[0].recurrent_state.clone()
    long.reorder_cache(torch.tensor([1, 0]))
    assert torch.equal(long[0].recurrent_state, before.flip(0))


def test_wrong_cache_type_and_missing_inputs_fail_clearly():
    model = GDN2Model(tiny_config())
    with pytest.raises(TypeError, match="GDN2Cache"):
        model(tokens(1, 4), past_key_values=((None, None),))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()


def test_gradient_checkpointing_matches_plain_backward():
    model = _lm().train()
    ids = tokens(1, 16, seed=7)
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert model.model.gradient_checkpointing
    model(ids, labels=ids).loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], rtol=1e-4, atol=1e-6)


def test_bf16_forward_on_cpu_keeps_the_dtype():
    model = _lm().to(torch.bfloat16)
    with torch.no_grad():
        out = model(tokens(1, 12), use_cache=True)
        step = model(tokens(1, 1), past_key_values=out.past_key_values, use_cache=True)
    assert out.logits.dtype == step.logits.dtype == torch.bfloat16
    assert out.past_key_values[0].recurrent_state.dtype == torch.float32
    assert torch.isfinite(step.logits).all()


def test_short_convolution_equals_a_causal_conv1d_and_continues_from_its_cache():
    from gdn2_model.layer import ShortConvolution

    torch.manual_seed(0)
    conv = ShortConvolution(8, 4, bias=True)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 11, 8)
    ref = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x.transpose(1, 2), (3, 0)), conv.weight, conv.bias, groups=8
    )
    ref = torch.nn.functional.silu(ref.transpose(1, 2))
    with torch.no_grad():
        y, _ = conv(x)
        torch.testing.assert_close(y, ref)
        # 2 tokens, then 1, then 8, each continuing from the cache of the previous call
        parts, cache = [], None
        for s, e in ((0, 2), (2, 3), (3, 11)):
            out, cache = conv(x[:, s:e], cache=cache, output_final_state=True)
            parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), ref)


@pytest.mark.parametrize("overrides", VARIANTS[:2])
def test_residual_projections_get_the_scaled_init(overrides):
    torch.manual_seed(0)
    cfg = tiny_config(hidden_size=128, num_hidden_layers=8, intermediate_size=512, **overrides)
    model = GDN2Model(cfg)
    scaled = cfg.initializer_range / (2 * cfg.num_hidden_layers) ** 0.5
    for layer in model.layers:
        for proj in (layer.attn.o_proj, layer.mlp.down_proj):
            assert abs(proj.weight.std().item() - scaled) < 0.1 * scaled
        assert (
            abs(layer.attn.q_proj.weight.std().item() - cfg.initializer_range) < 0.1 * cfg.initializer_range
        )


def test_random_init_trains_stably():
    """A few AdamW steps on a fixed batch: loss falls steadily from ~ln(vocab), gradients stay finite."""
    torch.manual_seed(0)
    model = GDN2ForCausalLM(tiny_config(attn=HYBRID)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = tokens(2, 24, seed=8)
    losses = []
    for _ in range(15):
        loss = model(ids, labels=ids).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        assert torch.isfinite(norm)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert abs(losses[0] - torch.log(torch.tensor(97.0)).item()) < 0.5
    assert losses[-1] < 0.6 * losses[0]


def test_beam_search_reorders_the_recurrent_cache():
    model = _lm(attn=HYBRID)
    prompt = tokens(2, 6, seed=9)
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=6, num_beams=3, do_sample=False)
    with torch.no_grad():
        cached = model.generate(prompt, **kwargs)
        recomputed = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_return_dict_false_gives_tuples():
    model = _lm()
    ids = tokens(1, 5)
    with torch.no_grad():
        out = model(ids, return_dict=False, use_cache=False)
        ref = model(ids, use_cache=False)
    assert isinstance(out, tuple) and len(out) == 1
    torch.testing.assert_close(out[0], ref.logits)


def test_fused_ops_flag_never_changes_the_cpu_path():
    """`fused_ops` only selects Triton kernels in CUDA inference: on CPU both settings give equal logits."""
    from gdn2_model.layer import use_fused_ops

    assert not use_fused_ops(True, torch.zeros(1))
    torch.manual_seed(0)
    on = GDN2ForCausalLM(tiny_config(fused_ops=True, conv_bias=True)).eval()
    off = GDN2ForCausalLM(tiny_config(fused_ops=False, conv_bias=True)).eval()
    off.load_state_dict(on.state_dict())
    ids = tokens(2, 21, seed=4)
    with torch.no_grad():
        assert torch.equal(on(ids).logits, off(ids).logits)
