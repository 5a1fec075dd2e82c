"""rag: question -> hybrid retrieval -> 100k-token context -> GDN-2 reader -> cited answer.

    from gdn2_rag import RAG
    answer = RAG.open("my-index").ask("What is the notice period?")

Heavy modules (torch, faiss, sentence-transformers, llama-index) are imported lazily, on first use,
so `import gdn2_rag` stays cheap; the LlamaIndex adapters live in `gdn2_rag.llamaindex`.
"""

from gdn2_rag.config import RAGConfig
from gdn2_rag.errors import RagError
from gdn2_rag.filters import MetadataFilter
from gdn2_rag.pipeline import RAG
from gdn2_rag.types import Answer, Citation, Passage, Timings

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
