"""Context-parallel reading on 2 gloo processes (CPU) equals reading on one: same logits, same span.

The one-process answer is the ground truth. Each worker gets the whole input and reads its slice, either
from the cache the previous rank hands it (`context_parallel_prefill`) or all at once with the states
combined afterwards (`two_pass_prefill`, pure GDN-2 models). One spawn runs every case (process start-up
dominates).
"""

from __future__ import annotations

import pytest
import torch
from model_testutils import HYBRID, tiny_config, tokens

from gdn2_model import GDN2ForCausalLM, GDN2ForReader
from gdn2_model.distributed import (
    Worker,
    context_parallel_extract,
    context_parallel_prefill,
    run_workers,
    slice_bounds,
    two_pass_prefill,
)
from gdn2_model.prompt import ContextPiece
from gdn2_model.reader import Reader

CASES = {
    # name: (config overrides, model class, batch, tokens)
    "gdn2-reader": (dict(reader_question_match=True), GDN2ForReader, 1, 45),
    "hybrid-reader": (dict(attn=HYBRID), GDN2ForReader, 2, 29),
    "fewer-tokens-than-ranks": ({}, GDN2ForReader, 1, 1),
    "gdn2-lm": ({}, GDN2ForCausalLM, 1, 23),
    # more value heads than key heads, erase gate in [0, 2], no convs: the two-pass algebra in full
    "gdn2-variants": (dict(num_v_heads=4, allow_neg_eigval=True, use_short_conv=False), GDN2ForReader, 2, 33),
}
TWO_PASS = ["gdn2-reader", "gdn2-lm", "gdn2-variants"]


def _model(name: str):
    overrides, cls, _, _ = CASES[name]
    torch.manual_seed(0)
    return cls(tiny_config(**overrides)).eval()


def _inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, batch, length = CASES[name]
    ids = tokens(batch, length, seed=1)
    match = (torch.rand(batch, length, generator=torch.Generator().manual_seed(2)) < 0.3).long()
    return ids, match


def _pieces() -> tuple[str, list[ContextPiece]]:
    from pathlib import Path

    text = Path("/usr/share/common-licenses/Apache-2.0").read_text()
    paras = [p for p in text.split("\n\n") if p.strip()][2:9]
    pieces = [ContextPiece(p, f"Apache-2.0 part {i}") for i, p in enumerate(paras)]
    return "Who is the Licensor?", pieces


def _run(method: str, model, ids, match):
    if method == "two-pass":
        return two_pass_prefill(model, ids, question_match=match)
    return context_parallel_prefill(model, ids, question_match=match, segment_len=4)


def _cp_worker(w: Worker) -> dict:
    out = {}
    runs = [("hand-off", name) for name in CASES] + [("two-pass", name) for name in TWO_PASS]
    for method, name in runs:
        ids, match = _inputs(name)
        model = _model(name)
        is_reader = isinstance(model, GDN2ForReader)
        res = _run(method, model, ids, match if is_reader else None)
        last = None
        if res.cache is not None:
            # the last rank's cache continues the sequence: one more token
            nxt = torch.tensor([[5]] * ids.shape[0])
            with torch.no_grad():
                step = model(nxt, past_key_values=res.cache, use_cache=True)
            last = (step.start_logits if is_reader else step.logits).clone()
        out[method, name] = {"start": res.start_logits, "end": res.end_logits, "next": last}
    errors = {}
    for name in ("hybrid-reader", "fewer-tokens-than-ranks"):
        try:
            two_pass_prefill(_model(name), _inputs(name)[0])
        except ValueError as err:
            errors[name] = str(err)
    out["two-pass errors"] = errors
    question, pieces = _pieces()
    reader = Reader.load(None)
    out["spans"] = context_parallel_extract(reader, question, pieces, k=3, segment_len=128)
    out["two-pass spans"] = context_parallel_extract(reader, question, pieces, k=3, two_pass=True)
    return out


@pytest.fixture(scope="module")
def two_ranks() -> list[dict]:
    return run_workers(_cp_worker, 2, timeout_s=300)


@pytest.mark.parametrize(
    "method, name", [("hand-off", n) for n in CASES] + [("two-pass", n) for n in TWO_PASS]
)
def test_context_parallel_equals_one_process(two_ranks, method, name):
    ids, match = _inputs(name)
    model = _model(name)
    is_reader = isinstance(model, GDN2ForReader)
    with torch.no_grad():
        ref = model(ids, question_match=match) if is_reader else model(ids)
        nxt = torch.tensor([[5]] * ids.shape[0])
        cont = model(ids, use_cache=True, **({"question_match": match} if is_reader else {}))
        step = model(nxt, past_key_values=cont.cache, use_cache=True)
    ref_next = step.start_logits if is_reader else step.logits
    for rank, out in enumerate(two_ranks):
        got = out[method, name]
        if is_reader:
            # every rank holds the whole context's logits
            torch.testing.assert_close(got["start"], ref.start_logits, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got["end"], ref.end_logits, rtol=1e-4, atol=1e-5)
        else:
            assert got["start"] is None and got["end"] is None
        # only the last rank keeps the final cache, and it continues exactly like the one-pass cache
        if rank == 1:
            torch.testing.assert_close(got["next"], ref_next, rtol=1e-4, atol=1e-5)
        else:
            assert got["next"] is None


def test_two_pass_refuses_attention_layers_and_slices_shorter_than_the_conv(two_ranks):
    for out in two_ranks:
        errors = out["two-pass errors"]
        assert "pure GDN-2" in errors["hybrid-reader"]
        assert "shorter than the conv width" in errors["fewer-tokens-than-ranks"]


def test_context_parallel_reader_gives_the_one_process_spans(two_ranks):
    question, pieces = _pieces()
    ref = Reader.load(None).extract_spans(question, pieces, k=3)
    assert ref, "the shipped reader found no span"
    for out, key in [(out, key) for out in two_ranks for key in ("spans", "two-pass spans")]:
        got = out[key]
        assert [(s.piece_index, s.char_start, s.char_end) for s in got] == [
            (s.piece_index, s.char_start, s.char_end) for s in ref
        ]
        assert [s.score for s in got] == pytest.approx([s.score for s in ref], rel=1e-4)


def test_slices_cover_the_context_in_order():
    assert slice_bounds(10, 3) == [0, 4, 7, 10]
    assert slice_bounds(1, 2) == [0, 1, 1]
    assert slice_bounds(0, 1) == [0, 0]
    with pytest.raises(ValueError, match="world=0"):
        slice_bounds(5, 0)
