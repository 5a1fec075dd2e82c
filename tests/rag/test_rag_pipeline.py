"""The RAG class end to end over the small in-memory index: answers, citations, JSON, errors, threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rag_fakes import FakeIndex

from gdn2_rag import RAG, RAGConfig, RagError
from gdn2_rag.citations import FileLines, verify
from gdn2_rag.schema import validator

QUESTIONS = {
    "How many days of written notice are needed to terminate the Agreement?": ("contract.txt", "ninety days"),
    "When does the password reset link expire?": ("password.md", "45 minutes"),
    "Which laws govern this Agreement?": ("contract.txt", "Delaware"),
}


def _assert_cited(answer, file_name: str, expected: str) -> None:
    assert expected in answer.text
    assert answer.citations, "an answer without a citation"
    files = FileLines()
    for c in answer.citations:
        assert c.verified and verify(c.path, c.line_start, c.line_end, c.quote, files)
    cited = [c for c in answer.citations if c.path.endswith(file_name)]
    assert cited, f"no citation of {file_name}: {[c.location for c in answer.citations]}"
    lines = Path(cited[0].path).read_text(encoding="utf-8").splitlines()
    assert expected in "\n".join(lines[cited[0].line_start - 1 : cited[0].line_end])


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_ask_cites_the_file_and_lines_that_hold_the_answer(fake_rag, question):
    answer = fake_rag.ask(question)
    assert answer.mode == "retrieval-only" and not answer.used_reader
    assert "turned off" in answer.model["reason"]
    file_name, expected = QUESTIONS[question]
    _assert_cited(answer, file_name, expected)
    assert expected in answer.evidence
    assert answer.context_tokens <= 100_000 and answer.context_pieces >= 1
    assert answer.timings.total_s >= answer.timings.retrieve_s > 0


def test_ask_json_matches_the_documented_schema(fake_rag):
    data = fake_rag.ask("When does the password reset link expire?", top_k=3).to_dict()
    errors = sorted(validator("ask").iter_errors(data), key=str)
    assert not errors, errors[0].message if errors else ""
    assert data["index"]["path"].endswith("idx") and data["index"]["chunks"] > 0
    assert len(data["passages"]) <= 3
    # and the schema really constrains: a citation that was not verified is rejected
    data["citations"][0]["verified"] = False
    assert list(validator("ask").iter_errors(data))


def test_search_json_schema_and_filters(fake_rag):
    import json

    passages = fake_rag.search("reset link", k=2, domain="support")
    assert passages and all(p.domain == "support" for p in passages)
    doc = {"schema_version": 1, "query": "reset link", "passages": [p.to_dict() for p in passages]}
    doc["timings"] = {"retrieve_s": 0.001}
    assert not list(validator("search").iter_errors(json.loads(json.dumps(doc))))
    assert fake_rag.search("reset link", k=5, path_glob="*.py") == [] or all(
        p.path.endswith(".py") for p in fake_rag.search("reset link", k=5, path_glob="*.py")
    )


def test_small_budget_keeps_context_within_it(fake_rag):
    answer = fake_rag.ask("What are the fees and when are they due?", context_tokens=128)
    assert answer.context_tokens <= 128
    assert answer.context_pieces >= 1
    with pytest.raises(RagError, match="raise --context-tokens"):
        fake_rag.ask("What are the fees and when are they due?", context_tokens=64)


def test_concurrent_ask_from_threads_is_safe(fake_rag):
    questions = list(QUESTIONS) * 4
    # the first four start together, so they really overlap
    barrier = threading.Barrier(4)

    def run(item):
        i, q = item
        if i < 4:
            barrier.wait(timeout=10)
        return q, fake_rag.ask(q)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, enumerate(questions)))
    for q, answer in results:
        file_name, expected = QUESTIONS[q]
        _assert_cited(answer, file_name, expected)
    # the reader runtime was built once and shared
    assert len({id(fake_rag.reader) for _ in range(3)}) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"question": "   "}, "question is empty"),
        ({"question": "q", "context_tokens": 10}, "at least 64"),
        ({"question": "q", "context_tokens": 0}, "at least 64"),
        ({"question": "q", "top_k": 0}, "at least 1"),
        ({"question": "q", "domain": "finance"}, "unknown domain"),
    ],
)
def test_ask_user_errors(fake_rag, kwargs, message):
    with pytest.raises(RagError, match=message):
        fake_rag.ask(**kwargs)


def test_ingest_with_an_unknown_domain_is_a_user_error(tmp_path):
    (tmp_path / "a.txt").write_text("text\n")
    with pytest.raises(RagError, match="unknown domain 'finance'"):
        RAG.open(tmp_path / "index", create=True).ingest([tmp_path / "a.txt"], domain="finance")


def test_no_index_and_empty_index_are_user_errors(tmp_path):
    with pytest.raises(RagError, match="no index at"):
        RAG.open(tmp_path / "missing")
    empty = RAG(tmp_path, index=FakeIndex([]), config=RAGConfig(device="cpu"))
    with pytest.raises(RagError, match="empty"):
        empty.ask("anything")


def test_missing_model_path_and_cuda_without_cuda(tmp_path, fake_index):
    with pytest.raises(RagError, match="does not exist"):
        RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tmp_path / "nope"))).ask("q")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RagError, match="CUDA is not available"):
            RAG(tmp_path, index=fake_index, config=RAGConfig(device="cuda")).ask("notice")


def test_require_reader_refuses_retrieval_only(tmp_path, fake_index, monkeypatch):
    import gdn2_rag.reading

    monkeypatch.setattr(gdn2_rag.reading, "default_checkpoint", lambda: tmp_path / "no-checkpoint")
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu", require_reader=True))
    with pytest.raises(RagError, match="cannot load the reader"):
        rag.ask("notice")
