"""rag: question -> hybrid retrieval -> 100k-token context -> GDN-2 reader -> cited answer.

Heavy modules (torch, faiss, sentence-transformers) are imported lazily so `import rag` is cheap.
"""

from rag.errors import NotBuiltError, RagError

__version__ = "0.1.0"
__all__ = ["NotBuiltError", "RagError", "__version__"]
