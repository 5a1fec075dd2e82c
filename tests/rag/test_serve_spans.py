"""The serving path's fast parts against their references, on CPU in float32:

- `pick_spans_packed` (many contexts on one token axis, where the logits are) == `best_spans` of each
  context alone, ties and heavy overlap included;
- `TokenCache` / `build_reader_input(cache=...)` == tokenising every time;
- the chunk table of packed sequences, built with vector operations once per `cu_seqlens` tensor, == the
  table written from its definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdn2_kernels.common.chunks import build_chunk_table, seq_offsets
from gdn2_model.prompt import ContextPiece, ReaderInput, ReaderLayout, align_end_logits, build_reader_input
from gdn2_model.reader import DEFAULT_CHECKPOINT
from gdn2_model.spans import (
    PackedSpanInputs,
    best_spans,
    best_start_per_end,
    best_start_per_end_windows,
    pick_spans_packed,
    span_text,
)
from gdn2_model.token_cache import TokenCache
from gdn2_model.tokenizer import load_tokenizer


def _context(
    rng: np.random.Generator, n_pieces: int, tokens_per_piece: int, exact: bool = False
) -> tuple[ReaderInput, list]:
    """A laid-out input of `n_pieces` pieces of one-letter words (up to, or `exact`ly, `tokens_per_piece`
    each), with marker tokens between them."""
    pidx, cs, ce, pieces = [-1, -1], [0, 0], [0, 0], []
    for p in range(n_pieces):
        n = tokens_per_piece if exact else int(rng.integers(1, tokens_per_piece + 1))
        pieces.append(ContextPiece(" ".join("abcdefgh"[i % 8] for i in range(n)), header=f"h{p}"))
        pidx += [-1, -1] + [p] * n
        cs += [0, 0] + [2 * i for i in range(n)]
        ce += [0, 0] + [2 * i + 1 for i in range(n)]
    pidx.append(-1), cs.append(0), ce.append(0)
    ri = ReaderInput(
        input_ids=np.zeros(len(pidx), dtype=np.int64),
        piece_index=np.asarray(pidx, dtype=np.int32),
        char_start=np.asarray(cs, dtype=np.int32),
        char_end=np.asarray(ce, dtype=np.int32),
        pieces_used=n_pieces,
        question_tokens=0,
    )
    return ri, pieces


def _logits(rng: np.random.Generator, t: int, levels: int | None) -> torch.Tensor:
    """Random logits; with `levels`, only that many distinct values (many exactly equal scores)."""
    x = rng.normal(size=t) * 3
    if levels is not None:
        x = np.round(x * levels / 6) * 6 / levels
    return torch.from_numpy(x.astype(np.float32))


def _key(spans) -> list:
    return [(s.piece_index, s.char_start, s.char_end, s.text, s.score) for s in spans]


@pytest.mark.parametrize("levels", [None, 4, 1], ids=["distinct", "ties", "all-equal"])
@pytest.mark.parametrize("seed", range(4))
def test_packed_pick_equals_best_spans_of_each_context(seed, levels):
    rng = np.random.default_rng(seed)
    contexts = [_context(rng, int(rng.integers(1, 6)), int(rng.integers(1, 60))) for _ in range(5)]
    ks = [int(rng.integers(1, 40)) for _ in contexts]
    max_lens = [int(rng.integers(1, 12)) for _ in contexts]
    logits = [(_logits(rng, len(ri), levels), _logits(rng, len(ri), levels)) for ri, _ in contexts]
    # the end scores as the reader hands them over: aligned (shifted) per context
    logits = [(s, align_end_logits(e)) for s, e in logits]
    expected = [
        best_spans(ri, pieces, s, e, k=k, max_len=m)
        for (ri, pieces), (s, e), k, m in zip(contexts, logits, ks, max_lens, strict=True)
    ]
    packed = PackedSpanInputs.build([ri for ri, _ in contexts], ks, max_lens, torch.device("cpu"))
    got = pick_spans_packed(torch.cat([s for s, _ in logits]), torch.cat([e for _, e in logits]), packed)
    for (ri, pieces), spans, want in zip(contexts, got, expected, strict=True):
        assert _key([span_text(ri, pieces, s) for s in spans]) == _key(want)
    assert sum(len(w) for w in expected) > len(contexts)


@pytest.mark.parametrize("t, max_len", [(200, 9), (5, 9), (64, 1)])
def test_windowed_best_start_equals_the_loop(t, max_len):
    rng = np.random.default_rng(t)
    piece = torch.from_numpy(np.repeat(np.arange(-1, 7), -(-t // 8))[:t].copy())
    cand = piece >= 0
    # few distinct values: many exact ties between starts
    ls, le = (torch.from_numpy(np.round(rng.normal(size=t)).astype(np.float32)) for _ in range(2))
    want = best_start_per_end(ls, le, cand, piece, max_len)
    got = best_start_per_end_windows(ls, le, cand, piece, max_len)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    # a per-token limit equal to max_len everywhere changes nothing (mixed limits: the packed pick tests)
    full = torch.full((t,), max_len)
    assert torch.equal(best_start_per_end_windows(ls, le, cand, piece, max_len, full)[1], want[1])


def test_packed_pick_holds_when_the_best_ends_all_overlap():
    """The worst case of the 2 * k * max_len bound: every end's best span covers the same top start, so
    each kept span rejects every end that overlaps it before the next one is found."""
    rng = np.random.default_rng(7)
    ri, pieces = _context(rng, 1, 400, exact=True)
    t = len(ri)
    start = torch.full((t,), -5.0)
    start[torch.arange(t) % 9 == 3] = 5.0
    end = torch.linspace(4.0, 3.0, t)
    for k, m in ((30, 8), (3, 1), (50, 16)):
        want = best_spans(ri, pieces, start, end, k=k, max_len=m)
        (got,) = pick_spans_packed(start, end, PackedSpanInputs.build([ri], [k], [m], torch.device("cpu")))
        assert _key([span_text(ri, pieces, s) for s in got]) == _key(want)
        assert len(want) == k


def test_packed_pick_of_a_context_without_answer_tokens_is_empty():
    ri, pieces = _context(np.random.default_rng(1), 2, 5)
    empty = ReaderInput(
        input_ids=np.zeros(4, dtype=np.int64),
        piece_index=np.full(4, -1, dtype=np.int32),
        char_start=np.zeros(4, dtype=np.int32),
        char_end=np.zeros(4, dtype=np.int32),
        pieces_used=0,
        question_tokens=0,
    )
    t = len(ri) + 4
    got = pick_spans_packed(
        torch.randn(t),
        torch.randn(t),
        PackedSpanInputs.build([empty, ri], [3, 3], [4, 4], torch.device("cpu")),
    )
    assert got[0] == [] and len(got[1]) >= 1
    with pytest.raises(ValueError, match="max_answer_tokens"):
        PackedSpanInputs.build([ri], [1], [0], torch.device("cpu"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_CHECKPOINT)


PIECES = [
    ContextPiece("Either party may end it with 30 days notice.", "[1] a.txt"),
    ContextPiece("Passwords expire yearly; reset them in Settings › Security.", "[2] b.md"),
    ContextPiece("", "[3] empty.py"),
    ContextPiece("def retry(fn):\n    return fn()  # once more on TimeoutError", "[4] c.py"),
]


def test_layout_from_cached_tokens_equals_tokenising_again(tokenizer):
    cache = TokenCache(tokenizer)
    plain = build_reader_input(tokenizer, "When do passwords expire?", PIECES)
    # assembly counts the pieces first (the reader's layout shares the cache), then the reader lays out
    layout = ReaderLayout(tokenizer, cache=cache)
    counted = layout.frame_tokens("When do passwords expire?") + sum(
        layout.piece_tokens(p.header, p.text) for p in PIECES
    )
    misses = cache.misses
    cached = build_reader_input(tokenizer, "When do passwords expire?", PIECES, cache=cache)
    assert cache.misses == misses and cache.hits >= 2 * len(PIECES)
    assert counted == len(plain)
    for field in ("input_ids", "piece_index", "char_start", "char_end", "question_match"):
        np.testing.assert_array_equal(getattr(cached, field), getattr(plain, field), err_msg=field)
    assert cached.input_ids.dtype == np.int64
    # a budget cuts the same pieces off
    cut = build_reader_input(tokenizer, "q?", PIECES, max_tokens=30, cache=cache)
    np.testing.assert_array_equal(
        cut.input_ids, build_reader_input(tokenizer, "q?", PIECES, max_tokens=30).input_ids
    )


def test_token_cache_keeps_at_most_its_budget_and_evicts_the_least_recent(tokenizer):
    texts = [f"text number {i} with a few words" for i in range(6)]
    one = len(TokenCache(tokenizer).encode_many(texts[:1])[0])
    cache = TokenCache(tokenizer, max_tokens=3 * one)
    cache.encode_many(texts[:3])
    cache.encode_many(texts[:1])  # texts[0] is now the most recent
    cache.encode_many(texts[3:4])  # evicts texts[1]
    assert cache.held_tokens <= 3 * one
    hits = cache.hits
    cache.encode_many([texts[0], texts[2], texts[3]])
    assert cache.hits == hits + 3
    misses = cache.misses
    again = cache.encode_many([texts[1]])
    assert cache.misses == misses + 1
    np.testing.assert_array_equal(again[0].ids, tokenizer.encode(texts[1], add_special_tokens=False).ids)


def _table_by_definition(offs: list[int], C: int) -> tuple[list[int], list[int], list[int]]:
    bos, lens, seq_chunks = [], [], [0]
    for s, e in zip(offs[:-1], offs[1:], strict=True):
        for c in range(s, e, C):
            bos.append(c)
            lens.append(min(C, e - c))
        seq_chunks.append(len(bos))
    return bos, lens, seq_chunks


@pytest.mark.parametrize("seed", range(3))
def test_packed_chunk_table_equals_its_definition_and_is_built_once_per_tensor(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 300, size=int(rng.integers(1, 12)))
    lengths[0] = 0  # an empty sequence
    offs = [0, *np.cumsum(lengths).tolist()]
    cu = torch.tensor(offs, dtype=torch.int32)
    table = build_chunk_table(1, offs[-1], 64, torch.device("cpu"), cu)
    bos, lens, seq_chunks = _table_by_definition(offs, 64)
    assert table.chunk_bos.tolist() == bos and table.chunk_len.tolist() == lens
    assert table.seq_chunks.tolist() == seq_chunks
    assert (table.num_chunks, table.num_seqs) == (len(bos), len(offs) - 1)
    assert build_chunk_table(1, offs[-1], 64, torch.device("cpu"), cu) is table
    assert seq_offsets(cu) == tuple(offs)
    # changed in place: derived again, not served stale
    cu.add_(0)
    assert build_chunk_table(1, offs[-1], 64, torch.device("cpu"), cu) is not table
