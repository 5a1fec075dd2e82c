"""The batched read (several contexts in one packed varlen pass) equals reading each context alone;
the micro-batcher and the bounded pool behind the server keep their bounds.

A tiny random GDN-2 reader on CPU with the shipped tokenizer: the comparison is of the network's packed
path (`cu_seqlens`) against its one-context path, so random weights test it as well as trained ones.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from gdn2_model import GDN2Config, GDN2ForReader
from gdn2_model.prompt import ContextPiece, build_reader_input
from gdn2_model.reader import DEFAULT_CHECKPOINT, Reader
from gdn2_model.tokenizer import load_tokenizer
from gdn2_rag.batching import BatchSettings, BoundedExecutor, MicroBatcher, Overloaded
from gdn2_rag.serve.reader import BatchedReaderRuntime
from gdn2_rag.serve.search import PrefetchingEmbedder

QUERIES = [
    ("What is the notice period?", [ContextPiece("Either party may end it with 30 days notice.", "a.txt")]),
    ("How do I reset a password?", [ContextPiece("Open settings. Choose reset.", "b.md"),
                                    ContextPiece("Passwords expire yearly.", "c.md")]),
    ("Which error is retried?", [ContextPiece("", "empty.py")]),
    ("What does retry do?", [ContextPiece("def retry(fn): call fn again on TimeoutError", "d.py")]),
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_reader() -> Reader:
    torch.manual_seed(0)
    tok = load_tokenizer(DEFAULT_CHECKPOINT)
    cfg = GDN2Config(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_heads=2, head_dim=16,
        intermediate_size=48, eos_token_id=None, bos_token_id=None,
        reader_question_match=True, reader_end_shift=True,
    )  # fmt: skip
    return Reader(GDN2ForReader(cfg).eval(), tok, DEFAULT_CHECKPOINT, torch.device("cpu"), torch.float32)


def test_packed_logits_equal_one_by_one(tiny_reader):
    inputs = [build_reader_input(tiny_reader.tokenizer, q, p) for q, p in QUERIES]
    packed = tiny_reader.logits_batch(inputs)
    for ri, (start, end) in zip(inputs, packed, strict=True):
        s1, e1 = tiny_reader.logits(ri)
        assert start.shape == s1.shape == (len(ri),)
        torch.testing.assert_close(start, s1, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(end, e1, rtol=1e-4, atol=1e-4)


def test_spans_equal_one_by_one_and_passes_are_split_by_the_token_cap(tiny_reader):
    lengths = [len(build_reader_input(tiny_reader.tokenizer, q, p)) for q, p in QUERIES]
    alone = [tiny_reader.extract_spans(q, p, k=3) for q, p in QUERIES]
    # a cap of the longest input puts (nearly) every context in its own pass; a large cap packs them all
    for cap in (max(lengths), 10 * sum(lengths)):
        batched = tiny_reader.extract_spans_batch(QUERIES, k=3, max_pass_tokens=cap)
        assert [[(s.piece_index, s.char_start, s.char_end, s.text) for s in b] for b in batched] == [
            [(s.piece_index, s.char_start, s.char_end, s.text) for s in a] for a in alone
        ]
        for a, b in zip(alone, batched, strict=True):
            assert [s.score for s in b] == pytest.approx([s.score for s in a], rel=1e-3, abs=1e-6)
    # the empty context gives no span, as extract_spans does
    assert alone[2] == []


def test_spans_picked_on_the_device_equal_the_reference_on_cpu_logits(tiny_reader):
    """extract_spans picks on the reader's device (`pick_spans_packed`); `Reader.spans` is `best_spans`."""
    for q, p in QUERIES:
        ri = tiny_reader.prepare(q, p)
        if not ri.answer_mask().any():
            continue
        want = tiny_reader.spans(ri, p, *tiny_reader.logits(ri), k=5, max_answer_tokens=3)
        got = tiny_reader.extract_spans(q, p, k=5, max_answer_tokens=3)
        assert [(s.piece_index, s.char_start, s.char_end, s.text) for s in got] == [
            (s.piece_index, s.char_start, s.char_end, s.text) for s in want
        ]
        assert [s.score for s in got] == pytest.approx([s.score for s in want], rel=1e-5)


def test_packing_is_not_a_no_op(tiny_reader):
    """Guard against a packed pass that leaks state across sequences: reading B after A in one row without
    cu_seqlens differs from reading B alone, while the packed pass does not."""
    a, b = (build_reader_input(tiny_reader.tokenizer, q, p) for q, p in (QUERIES[0], QUERIES[3]))
    ids = torch.cat([torch.from_numpy(a.input_ids), torch.from_numpy(b.input_ids)])[None]
    match = torch.cat([torch.from_numpy(a.question_match), torch.from_numpy(b.question_match)])[None]
    with torch.no_grad():
        leaky = tiny_reader.net(ids, question_match=match, use_cache=False).start_logits[0, len(a) :]
    alone, _ = tiny_reader.logits(b)
    packed, _ = tiny_reader.logits_batch([a, b])[1]
    assert not torch.allclose(leaky, alone, atol=1e-3)
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-4)


def _runtime(reader: Reader, **batch) -> BatchedReaderRuntime:
    rt = BatchedReaderRuntime(device="cpu", require=True, batch=BatchSettings(**batch))
    # the tiny network instead of the shipped checkpoint (loaded, policy "on")
    rt._reader, rt._loaded = reader, True
    return rt


def test_batched_runtime_reads_concurrent_asks_together_with_the_same_answers(tiny_reader):
    """Threads (as the server's pool) call `_extract`; the batcher packs their passes; each gets its own
    answer, equal to the unbatched runtime's, with and without fusion with retrieval ranks."""
    plain = _runtime(tiny_reader)
    calls = [(q, p, None, 0.0) for q, p in QUERIES if any(x.text for x in p)]
    calls += [(q, p, list(range(1, len(p) + 1)), 3.0) for q, p in QUERIES if any(x.text for x in p)]
    expected = [plain._extract(q, p, 8, r, w) for q, p, r, w in calls]

    async def serve() -> tuple[list, BatchedReaderRuntime]:
        rt = _runtime(tiny_reader, max_batch=8, max_wait_ms=50)
        await rt.start()
        try:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(len(calls)) as pool:
                jobs = [loop.run_in_executor(pool, rt._extract, q, p, 8, r, w) for q, p, r, w in calls]
                return await asyncio.gather(*jobs), rt
        finally:
            await rt.stop()

    got, rt = asyncio.run(serve())
    assert [(s.piece_index, s.char_start, s.char_end, s.text) for s in got] == [
        (s.piece_index, s.char_start, s.char_end, s.text) for s in expected
    ]
    assert [s.score for s in got] == pytest.approx([s.score for s in expected], rel=1e-3, abs=1e-6)
    assert rt.batcher.stats.items == len(calls) and rt.batcher.stats.batches < len(calls)


def test_batcher_bounds_its_queue_and_reports_each_items_error():
    seen: list[list[int]] = []

    def run(items: list[int]) -> list:
        seen.append(items)
        time.sleep(0.05)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    async def main():
        b = MicroBatcher(run, BatchSettings(max_batch=3, max_wait_ms=20, max_queue=4))
        await b.start()
        try:
            first = [asyncio.ensure_future(b.submit(i)) for i in (1, -2, 3)]
            await asyncio.sleep(0.01)  # the first batch is running: the next items queue
            queued = [asyncio.ensure_future(b.submit(i)) for i in (4, 5, 6, 7)]
            await asyncio.sleep(0)
            with pytest.raises(Overloaded):
                await b.submit(8)
            return await asyncio.gather(*first, *queued, return_exceptions=True), b.stats
        finally:
            await b.stop()

    results, stats = asyncio.run(main())
    assert results[0] == 10 and isinstance(results[1], ValueError) and results[2] == 30
    assert results[3:] == [40, 50, 60, 70]
    assert all(len(s) <= 3 for s in seen) and sorted(i for s in seen for i in s) == [-2, 1, 3, 4, 5, 6, 7]
    assert stats.refused == 1 and stats.items == 7


def test_bounded_executor_refuses_past_its_limit_and_frees_slots():
    pool = BoundedExecutor(2)
    gate = threading.Event()
    a, b = pool.submit(gate.wait, 5), pool.submit(gate.wait, 5)
    with pytest.raises(Overloaded):
        pool.submit(lambda: None)
    gate.set()
    a.result(5), b.result(5)
    deadline = time.monotonic() + 5
    while pool.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.submit(lambda: 7).result(5) == 7
    pool.shutdown()


def test_prefetching_embedder_serves_a_batch_from_one_call():
    calls: list[list[str]] = []

    class Inner:
        def identity(self) -> dict:
            return {"name": "fake"}

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)

    emb = PrefetchingEmbedder(Inner())
    emb.prefetch(["alpha", "beta", "alpha"])
    assert calls == [["alpha", "beta"]] and emb.identity() == {"name": "fake"}
    np.testing.assert_array_equal(emb.embed(["beta"]), [[4, 1]])
    np.testing.assert_array_equal(emb.embed(["alpha", "beta"]), [[5, 2], [4, 1]])
    assert len(calls) == 1
    # a text outside the batch is embedded as usual
    np.testing.assert_array_equal(emb.embed(["gamma"]), [[5, 2]])
    assert calls[-1] == ["gamma"]


def test_batches_are_capped_by_cost_and_the_item_that_does_not_fit_opens_the_next():
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        return items

    async def main():
        b = MicroBatcher(run, BatchSettings(max_batch=10, max_wait_ms=50), cost=lambda n: n, max_cost=10)
        await b.start()
        try:
            # costs 4 + 4 fit 10, the next 4 does not; 12 exceeds the cap alone and goes alone
            return await asyncio.gather(*(b.submit(n) for n in (4, 4, 4, 12, 3))), b.stats
        finally:
            await b.stop()

    results, stats = asyncio.run(main())
    assert results == [4, 4, 4, 12, 3]
    assert seen == [[4, 4], [4], [12], [3]]
    assert all(sum(s) <= 10 or len(s) == 1 for s in seen) and stats.items == 5
