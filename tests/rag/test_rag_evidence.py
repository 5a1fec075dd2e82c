"""The evidence answer (no reader span): semantic choice of the sentence, and optional abstention."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import gdn2_cli
from gdn2_rag import RAG, RAGConfig

QUESTION = "How long until the reset e-mail stops working?"


class TopicEmbedder:
    """A stand-in embedder that knows one paraphrase: expiry questions and the sentence about expiry."""

    def embed(self, texts: list[str]) -> np.ndarray:
        def vec(text: str) -> list[float]:
            t = text.lower()
            return [
                1.0 if ("stops working" in t or "expires" in t) else 0.0,
                1.0 if "reset" in t else 0.0,
                0.3,
            ]

        v = np.array([vec(t) for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def rag_with_embedder(tmp_path, fake_index):
    fake_index.embedder = TopicEmbedder()
    return RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False))


def test_semantic_evidence_finds_the_paraphrased_sentence(rag_with_embedder):
    answer = rag_with_embedder.ask(QUESTION, context_tokens=2000)
    assert "expires after 45 minutes" in answer.text
    assert answer.citations and answer.citations[0].path.endswith("password.md")
    assert 0.9 < answer.score <= 1.0  # the evidence's cosine


def test_lexical_evidence_needs_shared_words(tmp_path, fake_index):
    fake_index.embedder = TopicEmbedder()
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False, evidence="lexical"))
    answer = rag.ask(QUESTION, context_tokens=2000)
    # the question shares "reset" and "e-mail" with the sentence that sends the link, not with the expiry
    assert "expires" not in answer.text


def test_abstention_is_off_by_default_and_says_why_when_on(tmp_path, fake_index):
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False))
    assert not rag.ask(QUESTION, context_tokens=2000).abstained
    cfg = RAGConfig(use_reader=False, abstain=True, abstain_below=0.99)
    answer = RAG(tmp_path, index=fake_index, config=cfg).ask(QUESTION, context_tokens=2000)
    assert answer.abstained and answer.text == "" and not answer.citations
    assert "abstention threshold 0.99" in answer.model["reason"]
    assert answer.to_dict()["abstained"] is True


def test_cli_abstain_prints_no_answer(tmp_path, fake_index, monkeypatch):
    def open_(cls, index, config=None, **kw):
        return RAG(tmp_path, index=fake_index, config=config.with_(abstain_below=0.99))

    monkeypatch.setattr(RAG, "open", classmethod(open_))
    res = CliRunner().invoke(gdn2_cli.app, ["ask", QUESTION, "--no-reader", "--abstain"])
    assert res.exit_code == 0 and "No answer:" in res.stdout and "do not seem to answer" in res.stdout
