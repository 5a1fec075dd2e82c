"""LlamaIndex adapters, driven through llama-index-core's own retriever and query-engine APIs."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.llms.custom import CustomLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402

from gdn2_rag.llamaindex import READER_QA_TEMPLATE, GDN2ReaderLLM, RagQueryEngine, RagRetriever  # noqa: E402


def test_classes_plug_into_llamaindex():
    assert BaseRetriever in RagRetriever.__mro__
    assert CustomLLM in GDN2ReaderLLM.__mro__


def test_retriever_returns_scored_nodes_with_anchors(fake_rag):
    nodes = RagRetriever(fake_rag, similarity_top_k=2).retrieve("password reset link")
    assert 1 <= len(nodes) <= 2
    top = nodes[0]
    assert top.node.metadata["path"].endswith("password.md")
    assert top.node.metadata["location"].startswith(top.node.metadata["path"] + ":")
    assert top.score > 0 and top.score >= nodes[-1].score
    assert RagRetriever(fake_rag, similarity_top_k=0).retrieve("password") == []
    code = RagRetriever(fake_rag, similarity_top_k=5, domain="code").retrieve("attempts delay retry")
    assert code and all(n.node.metadata["domain"] == "code" for n in code)
    with pytest.raises(ValueError, match="similarity_top_k"):
        RagRetriever(fake_rag, similarity_top_k=-1)


def test_retriever_query_engine_answers_with_source_nodes(fake_rag):
    engine = RetrieverQueryEngine.from_args(
        RagRetriever(fake_rag, similarity_top_k=4),
        llm=GDN2ReaderLLM(fake_rag),
        text_qa_template=READER_QA_TEMPLATE,
    )
    response = engine.query("When does the password reset link expire?")
    assert "45 minutes" in str(response)
    assert response.source_nodes
    assert any(n.node.metadata["path"].endswith("password.md") for n in response.source_nodes)


def test_llm_refuses_foreign_prompts_and_streams(fake_rag):
    llm = GDN2ReaderLLM(fake_rag)
    assert llm.metadata.context_window == 100_000
    with pytest.raises(ValueError, match="READER_QA_TEMPLATE"):
        llm.complete("Tell me a story")
    prompt = READER_QA_TEMPLATE.format(
        query_str="Which state's laws govern?",
        context_str="Fees are monthly.\n\nGoverned by the laws of Delaware.",
    )
    chunks = list(llm.stream_complete(prompt))
    assert len(chunks) == 1 and "Delaware" in chunks[0].text
    assert chunks[0].additional_kwargs["mode"] == "retrieval-only"


def test_rag_query_engine_returns_verified_citations(fake_rag):
    response = RagQueryEngine(rag=fake_rag).query("How many days of written notice are needed to terminate?")
    assert "ninety days" in response.response
    citations = response.metadata["citations"]
    assert citations and citations[0]["path"].endswith("contract.txt") and citations[0]["verified"]
    first = response.source_nodes[0].node.metadata
    assert first["path"] == citations[0]["path"]
