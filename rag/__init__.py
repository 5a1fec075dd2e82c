"""rag: question -> hybrid retrieval -> 100k-token context -> GDN-2 reader -> cited answer.

    from rag import RAG
    answer = RAG.open("my-index").ask("What is the notice period?")

Heavy modules (torch, faiss, sentence-transformers, llama-index) are imported lazily, on first use,
so `import rag` stays cheap; the LlamaIndex adapters live in `rag.llamaindex`.
"""

from rag.config import RAGConfig
from rag.errors import RagError
from rag.filters import MetadataFilter
from rag.pipeline import RAG
from rag.types import Answer, Citation, Passage, Timings

__version__ = "0.1.0"
__all__ = [
    "RAG",
    "Answer",
    "Citation",
    "MetadataFilter",
    "Passage",
    "RAGConfig",
    "RagError",
    "Timings",
    "__version__",
]
