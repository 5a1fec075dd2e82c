"""The reader's prompt layout has one owner: ReaderLayout's token costs are build_reader_input's lengths."""

from __future__ import annotations

import dataclasses

import pytest

from gdn2_model.prompt import ContextPiece, ReaderLayout, build_reader_input
from gdn2_model.tokenizer import ANSWER, QUESTION, train_tokenizer

TEXTS = [
    "The notice period is 30 days.\nEither party may terminate in writing.",
    "def retry(n):\n    for attempt in range(n):\n        yield attempt\n",
    "Reset links expire after 45 minutes; request a new one from the sign-in page.",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 4, vocab_size=320, min_frequency=1)


PIECES = [
    ContextPiece(TEXTS[0], "[1] contract.txt § Term · lines 1-2", "contract.txt", 1, 2, "Term"),
    ContextPiece(TEXTS[1], "[2] retry.py · lines 1-3", path="retry.py", line_start=1, line_end=3),
    ContextPiece(TEXTS[2]),
    ContextPiece("", "an empty piece"),
]


@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize("order", ["query_first", "question_last"])
def test_layout_costs_are_the_reader_inputs_length(tok, repeat, order):
    layout = ReaderLayout(tok, repeat_question=repeat, layout=order)
    question = "How long is the notice period?"
    ri = build_reader_input(tok, question, PIECES, repeat_question=repeat, layout=order)
    cost = layout.frame_tokens(question) + sum(layout.piece_tokens(p.header, p.text) for p in PIECES)
    assert len(ri) == cost and ri.pieces_used == len(PIECES)
    assert len(layout.build(question, PIECES)) == cost
    # a budget of exactly that cost keeps every piece; one token less drops the last
    assert build_reader_input(
        tok, question, PIECES, max_tokens=cost, repeat_question=repeat, layout=order
    ).pieces_used == len(PIECES)
    short = build_reader_input(
        tok, question, PIECES, max_tokens=cost - 1, repeat_question=repeat, layout=order
    )
    assert short.pieces_used == len(PIECES) - 1


def test_repeat_question_lays_the_question_out_again_before_the_answer_cue(tok):
    question = "How long is the notice period?"
    once = build_reader_input(tok, question, PIECES)
    twice = build_reader_input(tok, question, PIECES, repeat_question=True)
    q_ids = tok.encode(question, add_special_tokens=False).ids
    tail = [tok.token_to_id(QUESTION), *q_ids, tok.token_to_id(ANSWER)]
    assert twice.input_ids.tolist() == once.input_ids[:-1].tolist() + tail
    assert len(twice) - len(once) == ReaderLayout(tok, repeat_question=True).frame_tokens(
        question
    ) - ReaderLayout(tok).frame_tokens(question)
    # the repeat is never part of an answer, and carries no question-match feature
    assert (twice.piece_index[len(once) - 1 :] == -1).all()
    assert (twice.question_match[len(once) - 1 :] == 0).all()


def test_context_piece_keeps_its_constructors_and_field_names():
    assert ContextPiece("text", "header") == ContextPiece(text="text", header="header")
    piece = PIECES[0]
    assert ContextPiece(**dataclasses.asdict(piece)) == piece
    assert [f.name for f in dataclasses.fields(ContextPiece)][:2] == ["text", "header"]
    where = (piece.path, piece.line_start, piece.line_end, piece.section, piece.page)
    assert where == ("contract.txt", 1, 2, "Term", None)


def test_a_repeated_question_cannot_change_what_the_span_heads_see_of_the_context(tok, tmp_path):
    """The reader is causal: the tail only reaches the end score of the last context token (end shift)."""
    import torch

    from gdn2_model import GDN2Config, GDN2ForReader
    from gdn2_model.reader import Reader

    torch.manual_seed(0)
    cfg = GDN2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_heads=2,
        head_dim=16,
        intermediate_size=48,
        bos_token_id=None,
        eos_token_id=None,
        reader_question_match=True,
        reader_end_shift=True,
    )
    reader = Reader(GDN2ForReader(cfg), tok, tmp_path, torch.device("cpu"), torch.float32)
    question = "How long is the notice period?"
    once = build_reader_input(tok, question, PIECES[:3])
    twice = build_reader_input(tok, question, PIECES[:3], repeat_question=True)
    (s1, e1), (s2, e2) = reader.logits(once), reader.logits(twice)
    context = once.answer_mask().nonzero()[0]
    last = int(context[-1])
    torch.testing.assert_close(s1[context], s2[context], rtol=0, atol=1e-5)
    torch.testing.assert_close(e1[context[:-1]], e2[context[:-1]], rtol=0, atol=1e-5)
    assert abs(float(e1[last] - e2[last])) > 1e-4
