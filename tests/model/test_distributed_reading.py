"""Data-parallel reading on 2 gloo processes (CPU): every rank returns the one-process answers, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdn2_model.distributed import ReadRequest, Worker, assign_longest_first, read_parallel, run_workers
from gdn2_model.prompt import ContextPiece
from gdn2_model.reader import Reader


def _requests() -> list[ReadRequest]:
    text = Path("/usr/share/common-licenses/Apache-2.0").read_text()
    paras = [p for p in text.split("\n\n") if p.strip()]
    questions = [
        "Who is the Licensor?",
        "What does Source form mean?",
        "What is a Contribution?",
        "Where can you obtain a copy of the License?",
        "What is the date of the License?",
    ]
    # contexts of different lengths, so the longest-first deal is not a round-robin
    return [
        ReadRequest(q, [ContextPiece(p[:300], f"part {j}") for j, p in enumerate(paras[i : i + 1 + i % 3])])
        for i, q in enumerate(questions)
    ] + [ReadRequest("Is anything here?", [ContextPiece("", "empty")])]


def _read_worker(w: Worker) -> list[list[tuple[int, int, int, float]]]:
    answers = read_parallel(Reader.load(None), _requests(), k=2)
    return [[(s.piece_index, s.char_start, s.char_end, s.score) for s in spans] for spans in answers]


def test_data_parallel_reading_equals_one_process():
    reader = Reader.load(None)
    ref = [
        [
            (s.piece_index, s.char_start, s.char_end, s.score)
            for s in reader.extract_spans(r.question, r.pieces, k=2)
        ]
        for r in _requests()
    ]
    assert ref[-1] == [] and all(ref[:-1]), ref
    for got in run_workers(_read_worker, 2, timeout_s=300):
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert [x[:3] for x in g] == [x[:3] for x in r]
            assert [x[3] for x in g] == pytest.approx([x[3] for x in r], rel=1e-4)


def test_longest_first_balances_the_work():
    shares = assign_longest_first([10, 1, 1, 1, 7, 2], 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    work = [sum([10, 1, 1, 1, 7, 2][i] for i in s) for s in shares]
    assert sorted(work) == [11, 11]
    assert assign_longest_first([3, 3], 4) == [[0], [1], [], []]
    with pytest.raises(ValueError, match="world=0"):
        assign_longest_first([1], 0)
