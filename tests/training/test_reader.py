"""Span decoding and the shipped default checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdn2_model.prompt import ContextPiece, ReaderInput
from gdn2_model.reader import Reader, best_spans


def _ri(pieces_of_tokens: list[int]) -> ReaderInput:
    n = len(pieces_of_tokens)
    return ReaderInput(
        input_ids=np.zeros(n, dtype=np.int64),
        piece_index=np.asarray(pieces_of_tokens, dtype=np.int32),
        char_start=np.asarray([3 * (i % 4) for i in range(n)], dtype=np.int32),
        char_end=np.asarray([3 * (i % 4) + 2 for i in range(n)], dtype=np.int32),
        pieces_used=2,
        question_tokens=0,
    )


def test_best_span_stays_in_one_piece_and_respects_max_len():
    # tokens: [-1, p0 x4, -1, -1, -1, p1 x4]; each token one two-letter word of its piece
    ri = _ri([-1, 0, 0, 0, 0, -1, -1, -1, 1, 1, 1, 1])
    pieces = [ContextPiece("aa bb cc dd"), ContextPiece("ee ff gg hh")]
    start = torch.full((12,), -10.0)
    end = torch.full((12,), -10.0)
    start[3], end[9] = 5.0, 5.0  # a cross-piece pair must never win
    start[10], end[11] = 4.0, 4.0
    (span,) = best_spans(ri, pieces, start, end, k=1, max_len=4)
    assert (span.piece_index, span.text) == (1, "gg hh")
    spans = best_spans(ri, pieces, start, end, k=2, max_len=1)
    assert all(s.char_end - s.char_start == 2 for s in spans)
    assert spans[0].score >= spans[1].score


def test_best_spans_widen_a_subword_span_to_whole_words():
    # tokens: [q] "convey" "ed" " by" " you" -- a span starting at "ed" or ending at "con" is widened
    ri = ReaderInput(
        input_ids=np.arange(5),
        piece_index=np.array([-1, 0, 0, 0, 0], dtype=np.int32),
        char_start=np.array([0, 0, 6, 8, 11], dtype=np.int32),
        char_end=np.array([0, 6, 8, 11, 15], dtype=np.int32),
        pieces_used=1,
        question_tokens=1,
    )
    pieces = [ContextPiece("conveyed by you")]
    start, end = torch.full((5,), -10.0), torch.full((5,), -10.0)
    start[2], end[3] = 5.0, 5.0
    (span,) = best_spans(ri, pieces, start, end, k=1, max_len=4)
    assert span.text == "conveyed by" and (span.char_start, span.char_end) == (0, 11)


def test_load_rejects_a_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reader checkpoint"):
        Reader.load(tmp_path)


def test_shipped_checkpoint_answers_a_fixed_question():
    reader = Reader.load(None)
    text = (
        "The grass is green. The sky is blue. One of the special magic numbers for walnut is: 4817263. "
        "The sun is yellow. Here we go. There and back again."
    )
    pieces = [
        ContextPiece("The grass is green. The sky is blue. " * 20, "haystack part 1"),
        ContextPiece(text, "part 2"),
    ]
    span = reader.extract(
        "What is the special magic number for walnut mentioned in the provided text?", pieces
    )
    assert (span.piece_index, span.text) == (1, "4817263")
    assert reader.identity["params"] > 1_000_000


def test_shipped_checkpoint_answers_from_the_right_one_of_several_keys():
    """MK-NIAH in miniature: four needles, the question's key decides which value is the answer."""
    reader = Reader.load(None)
    needles = {"walnut": "4817263", "harbor": "9920417", "cedar": "3371580", "falcon": "6604128"}
    pieces = [
        ContextPiece(
            f"Filler text about nothing. One of the special magic numbers for {k} is: {v}. More filler.",
            f"part {i}",
        )
        for i, (k, v) in enumerate(needles.items())
    ]
    for key, value in needles.items():
        span = reader.extract(
            f"What is the special magic number for {key} mentioned in the provided text?", pieces
        )
        assert span.text == value, key
