"""Streaming prefill: segments carrying the cache equal one pass; only the cache crosses segments."""

from __future__ import annotations

import pytest
import torch
from model_testutils import HYBRID, tiny_config, tokens

from gdn2_model import GDN2ForCausalLM, GDN2ForReader, GDN2Model, streaming_prefill


@pytest.mark.parametrize("segment_len", [1, 5, 16, 64])
@pytest.mark.parametrize("attn", [None, HYBRID], ids=["gdn2", "hybrid"])
def test_streaming_equals_one_pass(attn, segment_len):
    torch.manual_seed(0)
    model = GDN2ForCausalLM(tiny_config(attn=attn)).eval()
    ids = tokens(2, 37, seed=1)
    with torch.no_grad():
        full = model(ids, use_cache=True)
    streamed = streaming_prefill(model, ids, segment_len=segment_len, keep_all=True)
    torch.testing.assert_close(streamed.logits, full.logits, rtol=1e-4, atol=1e-5)
    assert streamed.past_key_values.seen_tokens == 37
    # the carried cache continues the sequence exactly like the one-pass cache
    nxt = tokens(2, 1, seed=2)
    with torch.no_grad():
        a = model(nxt, past_key_values=streamed.past_key_values, use_cache=True).logits
        b = model(nxt, past_key_values=full.past_key_values, use_cache=True).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_reader_streaming_keeps_span_logits_whole_and_lm_logits_last():
    torch.manual_seed(0)
    reader = GDN2ForReader(tiny_config(attn=HYBRID, reader_lm_head=True)).eval()
    ids = tokens(1, 30, seed=3)
    with torch.no_grad():
        full = reader(ids)
    out = streaming_prefill(reader, ids, segment_len=8)
    torch.testing.assert_close(out.start_logits, full.start_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.end_logits, full.end_logits, rtol=1e-4, atol=1e-5)
    assert out.logits.shape == (1, 1, 97)
    torch.testing.assert_close(out.logits, full.logits[:, -1:], rtol=1e-4, atol=1e-5)


def test_reader_question_match_is_cut_into_the_same_segments_and_changes_the_logits():
    torch.manual_seed(0)
    reader = GDN2ForReader(tiny_config(reader_question_match=True)).eval()
    ids = tokens(1, 30, seed=4)
    match = (torch.rand(1, 30, generator=torch.Generator().manual_seed(5)) < 0.3).long()
    with torch.no_grad():
        full = reader(ids, question_match=match)
        unflagged = reader(ids, question_match=torch.zeros_like(match))
        without = reader(ids)
    out = streaming_prefill(reader, ids, segment_len=7, question_match=match)
    torch.testing.assert_close(out.start_logits, full.start_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.end_logits, full.end_logits, rtol=1e-4, atol=1e-5)
    # no flags given reads as no token flagged
    torch.testing.assert_close(without.start_logits, unflagged.start_logits)
    # the feature reaches the network causally: from the first flagged token on, not before it
    first = int(match[0].nonzero()[0])
    assert not torch.allclose(full.start_logits[:, first:], unflagged.start_logits[:, first:])
    torch.testing.assert_close(full.start_logits[:, :first], unflagged.start_logits[:, :first])


def test_streaming_continues_a_given_cache_and_padding():
    torch.manual_seed(0)
    model = GDN2Model(tiny_config(attn=HYBRID)).eval()
    question, context = tokens(2, 6, seed=4), tokens(2, 20, seed=5)
    mask = torch.ones(2, 26, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        full = model(torch.cat([question, context], 1), attention_mask=mask).last_hidden_state
        head = model(question, attention_mask=mask[:, :6], use_cache=True)
    out = streaming_prefill(
        model,
        context,
        segment_len=7,
        past_key_values=head.past_key_values,
        attention_mask=mask,
        keep_all=True,
    )
    torch.testing.assert_close(out.last_hidden_state, full[:, 6:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"segment_len": 0}, "segment_len=0"),
        ({"input_ids": torch.zeros(1, 0, dtype=torch.long)}, "at least one token"),
        ({"attention_mask": torch.ones(1, 3)}, "must cover the 0 cached and 5 new tokens"),
    ],
)
def test_streaming_errors(kwargs, match):
    model = GDN2Model(tiny_config())
    args = {"input_ids": tokens(1, 5), **kwargs}
    with pytest.raises(ValueError, match=match):
        streaming_prefill(model, **args)


def test_cuda_graph_decoder_refuses_what_it_cannot_capture():
    from gdn2_model.streaming import CudaGraphDecoder

    torch.manual_seed(0)
    model = GDN2ForCausalLM(tiny_config()).eval()
    with torch.no_grad():
        cache = model(tokens(1, 4), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        CudaGraphDecoder(model, cache)
    hybrid = GDN2ForCausalLM(tiny_config(attn=HYBRID)).eval()
    with torch.no_grad():
        cache = hybrid(tokens(1, 4), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="pure GDN-2 model"):
        CudaGraphDecoder(hybrid, cache)
