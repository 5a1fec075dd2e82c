"""Context assembly (budget, merging, order, headers, query-first layout) and citations back to file lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from rag_fakes import FakeIndex

from gdn2_rag.assemble import assemble_context
from gdn2_rag.citations import FileLines, cite_span, verify
from gdn2_rag.tokens import EstimateCounter, EstimateLayout, TokenizerCounter


def _scores(chunks):
    return {c.id: 1.0 / (1 + i) for i, c in enumerate(chunks)}


@pytest.fixture
def long_doc(tmp_path) -> tuple[Path, FakeIndex]:
    path = tmp_path / "long.txt"
    path.write_text(
        "".join(f"Line {i}: clause number {i} says item {i * 7} applies.\n" for i in range(1, 61))
    )
    return path, FakeIndex.from_files({path: "legal"}, lines_per_chunk=6, overlap=2)


def _layout_cost(layout, ctx) -> int:
    """The whole prompt as the layout prices it: the frame and every piece (markers, header, text)."""
    return layout.frame_tokens(ctx.question) + sum(layout.piece_tokens(p.header, p.text) for p in ctx.pieces)


@pytest.mark.parametrize("repeat", [False, True])
def test_budget_is_respected_and_best_chunks_win(long_doc, repeat):
    _, index = long_doc
    chunks = list(index.chunks.values())[::-1]  # rank the last chunks best
    layout = EstimateLayout(repeat_question=repeat)
    ctx = assemble_context("which clause?", chunks, _scores(chunks), 300, layout)
    assert ctx.tokens <= 300
    assert ctx.pieces and ctx.skipped_chunks > 0
    assert chunks[0].id in ctx.chunk_ids
    # the accounting is the layout's own price of the context, not a bound on it
    assert ctx.tokens == _layout_cost(layout, ctx) and ctx.repeat_question is repeat


def test_adjacent_overlapping_chunks_merge_into_one_piece_in_file_order(long_doc):
    path, index = long_doc
    by_line = sorted(index.chunks.values(), key=lambda c: c.line_start)
    chosen = [by_line[2], by_line[0], by_line[1], by_line[6]]  # 0-1-2 touch; 6 is apart
    ctx = assemble_context("q", chosen, _scores(chosen), 10_000, EstimateCounter())
    assert len(ctx.pieces) == 2
    first = ctx.pieces[0]
    assert first.line_start == 1 and first.line_end == by_line[2].line_end
    # the overlap is trimmed: the merged text is exactly the file's lines, each once
    file_lines = path.read_text().splitlines()
    assert first.text == "\n".join(file_lines[: first.line_end])
    assert first.header == f"[1] {path} § {file_lines[0][:40]} · lines 1-{first.line_end}"
    assert ctx.pieces[1].header.startswith("[2] ")


def test_documents_ordered_by_best_chunk_then_position(fake_index):
    chunks = sorted(fake_index.chunks.values(), key=lambda c: (-c.line_start, c.path))
    code_first = [c for c in chunks if c.domain == "code"] + [c for c in chunks if c.domain != "code"]
    ctx = assemble_context("q", code_first, _scores(code_first), 100_000, EstimateCounter())
    assert ctx.pieces[0].path.endswith("retry.py")
    starts = [p.line_start for p in ctx.pieces if p.path == ctx.pieces[0].path]
    assert starts == sorted(starts)


def test_a_repeated_question_is_counted_twice(fake_index):
    chunks = list(fake_index.chunks.values())[:2]
    once = assemble_context("What is the term?", chunks, _scores(chunks), 5_000, EstimateLayout())
    twice = assemble_context(
        "What is the term?", chunks, _scores(chunks), 5_000, EstimateLayout(repeat_question=True)
    )
    assert [p.text for p in once.pieces] == [p.text for p in twice.pieces]
    question = EstimateCounter().count("What is the term?")
    # <|question|> and the question again
    assert twice.tokens - once.tokens == 1 + question
    assert (once.repeat_question, twice.repeat_question) == (False, True)


def test_a_bare_counter_is_taken_as_the_estimated_layout(fake_index):
    chunks = list(fake_index.chunks.values())[:3]
    by_counter = assemble_context("q", chunks, _scores(chunks), 5_000, EstimateCounter())
    by_layout = assemble_context("q", chunks, _scores(chunks), 5_000, EstimateLayout())
    assert by_counter.tokens == by_layout.tokens and by_counter.counter == by_layout.counter


def test_question_over_budget_raises():
    with pytest.raises(ValueError, match="budget"):
        assemble_context("word " * 200, [], {}, 64, EstimateCounter())


def test_token_counters():
    est = EstimateCounter()
    assert est.count("") == 0
    assert est.count("abcdefgh") == 2
    assert est.count("a b c d e") == 5  # word floor
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    assert TokenizerCounter(tok).count("hello world again") == 3


def test_span_maps_to_verified_file_lines_across_merged_chunks(long_doc):
    path, index = long_doc
    by_line = sorted(index.chunks.values(), key=lambda c: c.line_start)
    chosen = by_line[:3]
    ctx = assemble_context("q", chosen, _scores(chosen), 10_000, EstimateCounter())
    piece = ctx.pieces[0]
    target = "Line 12: clause number 12 says item 84 applies."
    start = piece.text.index(target)
    texts = {c.id: c.text for c in chosen}
    cites = cite_span(ctx, 0, start, start + len(target), texts)
    assert len(cites) == 1
    c = cites[0]
    assert (c.line_start, c.line_end) == (12, 12) and c.verified and c.verified_against == "file"
    assert target in path.read_text().splitlines()[c.line_start - 1]
    # a span crossing a segment boundary yields one verified citation per chunk, covering lines 5..9
    s = piece.text.index("Line 5:")
    e = piece.text.index("Line 9:") + len("Line 9:")
    multi = cite_span(ctx, 0, s, e, texts)
    assert multi[0].line_start == 5 and multi[-1].line_end == 9
    assert all(verify(str(path), m.line_start, m.line_end, m.quote, FileLines()) for m in multi)


def test_a_span_not_in_the_file_is_never_cited(long_doc, tmp_path):
    path, index = long_doc
    chosen = sorted(index.chunks.values(), key=lambda c: c.line_start)[:1]
    ctx = assemble_context("q", chosen, _scores(chosen), 10_000, EstimateCounter())
    # the file changed after ingest: the indexed text is no longer at those lines
    path.write_text("rewritten\n" * 60)
    assert cite_span(ctx, 0, 0, 20, {c.id: c.text for c in chosen}) == []
    with pytest.raises(ValueError, match="outside"):
        cite_span(ctx, 0, 0, 10**6, {})


def test_count_cache_gives_the_same_context_and_skips_recounting(long_doc):
    _, index = long_doc
    chunks = list(index.chunks.values())

    class Counting(EstimateCounter):
        texts: list[str] = []

        def count_many(self, texts):
            Counting.texts += texts
            return super().count_many(texts)

    cache: dict = {}
    first = assemble_context("q", chunks, _scores(chunks), 400, Counting(), count_cache=cache)
    counted = len(Counting.texts)
    second = assemble_context("q", chunks, _scores(chunks), 400, Counting(), count_cache=cache)
    assert [p.text for p in first.pieces] == [p.text for p in second.pieces]
    assert first.tokens == second.tokens
    assert any(len(p.segments) > 1 for p in second.pieces)
    # the second call only counted the question and headers, never a chunk or a merged piece again
    again = set(Counting.texts[counted:])
    assert again.isdisjoint({c.text for c in chunks} | {p.text for p in second.pieces})


def test_verify_counts_lines_as_ingest_does_across_form_feeds(tmp_path):
    # GPL-1 / LGPL-2.1 put form feeds between sections; only "\n" ends a line (as ingest counts)
    path = tmp_path / "license.txt"
    path.write_text("intro\n\x0c\nsection two\nlast line\n")
    assert verify(str(path), 3, 3, "section two", FileLines())
    assert verify(str(path), 4, 4, "last line", FileLines())
    assert not verify(str(path), 5, 5, "last line", FileLines())


def test_verify_reads_legacy_encodings_as_ingest_does(tmp_path):
    # a Windows-1252 contract: the quote has accents that UTF-8-with-replacement would lose
    path = tmp_path / "contrat.txt"
    path.write_bytes("Article 1\nLe prestataire s'engage à livrer le café crème.\n".encode("cp1252"))
    assert verify(str(path), 2, 2, "livrer le café crème", FileLines())
    assert not verify(str(path), 1, 1, "livrer le café crème", FileLines())


@pytest.fixture(scope="module")
def reader_tokenizer():
    """The v2 reader's tokenizer (its layout is the budget's exact counter when a v2 reader is loaded)."""
    from gdn2_model.reader import DEFAULT_CHECKPOINT
    from gdn2_model.tokenizer import load_tokenizer

    return load_tokenizer(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize("budget", [400, 1_000, 10_000])
def test_budget_is_the_length_of_the_readers_input(long_doc, reader_tokenizer, repeat, budget):
    from gdn2_model.prompt import ReaderLayout, build_reader_input
    from gdn2_rag.reading import context_pieces

    _, index = long_doc
    chunks = list(index.chunks.values())[::-1]
    layout = ReaderLayout(reader_tokenizer, repeat_question=repeat)
    ctx = assemble_context("Which clause says item 84?", chunks, _scores(chunks), budget, layout)
    # overlapping chunks were merged and trimmed, so the text was counted as the reader tokenises it
    assert any(s.trimmed for p in ctx.pieces for s in p.segments)
    ri = build_reader_input(
        reader_tokenizer, ctx.question, context_pieces(ctx), max_tokens=budget, repeat_question=repeat
    )
    assert ri.pieces_used == len(ctx.pieces)
    assert len(ri) == ctx.tokens <= budget


@pytest.mark.parametrize("budget", [400, 1_000, 10_000])
def test_budget_is_the_length_of_reader_v3s_input(long_doc, budget):
    """Reader v3 (the shipped one) counts what its GDN-2 layers read: headers and texts in WordPiece."""
    from tokenizers import Tokenizer

    from gdn2_model.reader_v3 import ReaderV3Config, V3Layout, base_model_path, build_v3_input
    from gdn2_rag.reading import context_pieces

    tok = Tokenizer.from_file(str(base_model_path() / "tokenizer.json"))
    _, index = long_doc
    chunks = list(index.chunks.values())[::-1]
    layout = V3Layout(tok, ReaderV3Config().header_tokens)
    ctx = assemble_context("Which clause says item 84?", chunks, _scores(chunks), budget, layout)
    inp = build_v3_input(tok, ctx.question, context_pieces(ctx), ReaderV3Config(), max_tokens=budget)
    assert inp.pieces_used == len(ctx.pieces) > 0
    assert len(inp) == ctx.tokens <= budget


def test_estimated_layout_has_the_readers_markers(reader_tokenizer):
    from gdn2_model.prompt import ReaderLayout

    exact_text = TokenizerCounter(reader_tokenizer)
    for repeat in (False, True):
        model = ReaderLayout(reader_tokenizer, repeat_question=repeat)
        estimate = EstimateLayout(exact_text, repeat_question=repeat)
        question, header, text = "What is the fee?", "[1] a.txt · lines 1-2", "The fee is 42.\nPay now."
        assert estimate.frame_tokens(question) == model.frame_tokens(question)
        assert estimate.piece_tokens(header, text) == model.piece_tokens(header, text)
        assert estimate.piece_markers == model.piece_markers


def test_the_budget_is_filled_up_to_less_than_one_more_chunk(long_doc):
    _, index = long_doc
    chunks = list(index.chunks.values())[::-1]
    layout = EstimateLayout()
    # the most one more chunk could cost: a piece of its own, with a header
    most = max(layout.piece_tokens(f"[99] {c.path} § {c.section} · lines 100-100", c.text) for c in chunks)
    for budget in range(150, 1200, 50):
        ctx = assemble_context("which clause?", chunks, _scores(chunks), budget, layout)
        assert ctx.tokens <= budget and (ctx.skipped_chunks == 0 or ctx.tokens > budget - most), budget
