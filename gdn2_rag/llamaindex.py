"""LlamaIndex adapters: our hybrid retriever, the GDN-2 reader as an LLM, and a cited query engine.

    from llama_index.core.query_engine import RetrieverQueryEngine
    from gdn2_rag import RAG
    from gdn2_rag.llamaindex import RagRetriever, GDN2ReaderLLM, READER_QA_TEMPLATE, RagQueryEngine

    rag = RAG.open("my-index")
    engine = RetrieverQueryEngine.from_args(
        RagRetriever(rag, similarity_top_k=20), llm=GDN2ReaderLLM(rag), text_qa_template=READER_QA_TEMPLATE
    )
    response = engine.query("What is the notice period?")   # .response, .source_nodes

    # or the whole pipeline (100k-token assembly, verified path:line citations) as one query engine
    response = RagQueryEngine(rag=rag).query("What is the notice period?")

The reader is extractive: `GDN2ReaderLLM.complete` expects READER_QA_TEMPLATE's layout (question first,
then the context LlamaIndex packed) and answers with a span of that context. With no reader checkpoint it
answers retrieval-only (the best-matching sentence) and says so in `additional_kwargs["mode"]`.
This module imports llama-index-core (slow); `import gdn2_rag` never does.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # an extra since the lean install: say how to get it
    raise ImportError(
        "gdn2_rag.llamaindex needs llama-index-core: pip install 'gdn2-rag[llamaindex]'"
    ) from exc
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.base.response.schema import Response
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ConfigDict, PrivateAttr

from gdn2_rag.extractive import best_span
from gdn2_rag.pipeline import RAG, READER, RETRIEVAL_ONLY
from gdn2_rag.types import Passage

# query-first, as the recurrent reader wants it; LlamaIndex fills {context_str} with the retrieved nodes
READER_QA_TEMPLATE = PromptTemplate("Question: {query_str}\n\nContext:\n{context_str}\n\nAnswer: ")
_PROMPT = re.compile(r"\AQuestion: (?P<question>.*?)\n\nContext:\n(?P<context>.*)\n\nAnswer: ?\Z", re.S)
# LlamaIndex joins node texts with a blank line
NODE_SEPARATOR = "\n\n"
METADATA_KEYS = ("path", "line_start", "line_end", "page", "section", "domain", "title", "location")


def passage_to_node(p: Passage) -> NodeWithScore:
    """A LlamaIndex node for one passage; its anchor (path, lines, page) travels as metadata."""
    meta = {k: v for k, v in p.to_dict().items() if k in METADATA_KEYS and v not in (None, "")}
    node = TextNode(
        id_=f"chunk-{p.chunk_id}",
        text=p.text,
        metadata=meta,
        # the reader sees the location, not every field; embedders never see metadata
        excluded_llm_metadata_keys=[k for k in meta if k != "location"],
        excluded_embed_metadata_keys=list(meta),
    )
    return NodeWithScore(node=node, score=p.score)


class RagRetriever(BaseRetriever):
    """`BaseRetriever` over a `RAG` index: hybrid dense + BM25, fused, filtered, de-duplicated."""

    def __init__(
        self,
        rag: RAG,
        similarity_top_k: int = 10,
        domain: str | None = None,
        path_glob: str | None = None,
        **kwargs: Any,
    ) -> None:
        if similarity_top_k < 0:
            raise ValueError(f"similarity_top_k must be >= 0, got {similarity_top_k}")
        self._rag = rag
        self._top_k = similarity_top_k
        self._domain = domain
        self._path_glob = path_glob
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._top_k == 0:
            return []
        passages = self._rag.search(
            query_bundle.query_str, k=self._top_k, domain=self._domain, path_glob=self._path_glob
        )
        return [passage_to_node(p) for p in passages]


class GDN2ReaderLLM(CustomLLM):
    """The extractive GDN-2 reader as a LlamaIndex LLM (complete / stream_complete).

    Use it with `text_qa_template=READER_QA_TEMPLATE`; a prompt in another layout is refused with a
    ValueError, because an extractive reader cannot follow free-form instructions.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    context_window: int = 100_000
    num_output: int = 32
    _rag: RAG = PrivateAttr()

    def __init__(self, rag: RAG, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rag = rag

    @classmethod
    def class_name(cls) -> str:
        return "gdn2_reader_llm"

    @property
    def metadata(self) -> LLMMetadata:
        name = self._rag.reader.identity.get("name", "gdn2-reader")
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            model_name=f"gdn2-reader:{name}",
            is_chat_model=False,
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        m = _PROMPT.match(prompt)
        if m is None:
            raise ValueError(
                "GDN2ReaderLLM reads prompts laid out as READER_QA_TEMPLATE "
                "(question first, then the context); pass text_qa_template=READER_QA_TEMPLATE"
            )
        question = m["question"].strip()
        pieces = [t for t in m["context"].split(NODE_SEPARATOR) if t.strip()]
        if not pieces:
            return CompletionResponse(text="", additional_kwargs={"mode": "no-context"})
        reader = self._rag.reader
        if reader.available:
            span = reader.extract_texts(question, pieces)
            return CompletionResponse(
                text=span.text.strip(),
                additional_kwargs={"mode": READER, "piece_index": span.piece_index, "score": span.score},
            )
        scored = [(best_span(question, t), i) for i, t in enumerate(pieces)]
        (start, end, score), i = max(scored, key=lambda x: (x[0][2], -x[1]))
        return CompletionResponse(
            text=pieces[i][start:end],
            additional_kwargs={
                "mode": RETRIEVAL_ONLY,
                "piece_index": i,
                "score": score,
                "reason": reader.reason,
            },
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        # an extractive span arrives whole: one chunk
        response = self.complete(prompt, formatted=formatted, **kwargs)
        yield CompletionResponse(
            text=response.text, delta=response.text, additional_kwargs=response.additional_kwargs
        )


class RagQueryEngine(CustomQueryEngine):
    """The whole pipeline as a LlamaIndex query engine: `RAG.ask` with verified citations.

    `response.source_nodes` are the cited passages first, then the rest of the context;
    `response.metadata` holds the answer's mode, citations (path:line-line) and timings.
    """

    rag: Any
    context_tokens: int | None = None
    top_k: int | None = None
    domain: str | None = None

    def custom_query(self, query_str: str) -> Response:
        answer = self.rag.ask(
            query_str, context_tokens=self.context_tokens, top_k=self.top_k, domain=self.domain
        )
        cited = {c.chunk_id for c in answer.citations}
        passages = sorted(answer.passages, key=lambda p: (p.chunk_id not in cited, p.rank))
        return Response(
            response=answer.text,
            source_nodes=[passage_to_node(p) for p in passages],
            metadata={
                "mode": answer.mode,
                "citations": [c.to_dict() for c in answer.citations],
                "timings": answer.timings.to_dict(),
                "model": answer.model,
            },
        )


__all__ = ["READER_QA_TEMPLATE", "GDN2ReaderLLM", "RagQueryEngine", "RagRetriever", "passage_to_node"]
