"""ingest: document folders -> domain-aware chunks -> embeddings -> FAISS + SQLite docstore + BM25.

    from gdn2_ingest import IngestConfig, ingest_paths, Index
    report = ingest_paths(".rag", ["docs/"], IngestConfig(domain="auto"))
    index = Index.open(".rag")

Names are resolved lazily so `import gdn2_ingest` stays cheap (no torch, faiss or bm25s until used).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from gdn2_ingest.config import DEFAULT_INDEX_DIR, IngestConfig
from gdn2_ingest.errors import (
    EmbedderLoadError,
    EmbedderMismatchError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    IndexUpgradeNeededError,
    IngestError,
    MissingPathError,
)
from gdn2_ingest.types import Chunk, IndexStats, IngestReport, SkippedFile

if TYPE_CHECKING:
    from gdn2_ingest.index import Index
    from gdn2_ingest.pipeline import ingest_paths
    from gdn2_ingest.upgrade import upgrade_index

_LAZY = {
    "Index": "gdn2_ingest.index",
    "ingest_paths": "gdn2_ingest.pipeline",
    "upgrade_index": "gdn2_ingest.upgrade",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gdn2_ingest' has no attribute {name!r}")


__all__ = [
    "DEFAULT_INDEX_DIR", "Chunk", "EmbedderLoadError", "EmbedderMismatchError", "Index", "IndexFormatError",
    "IndexLockedError", "IndexNotFoundError", "IndexStats", "IndexUpgradeNeededError", "IngestConfig",
    "IngestError", "IngestReport", "MissingPathError", "SkippedFile", "ingest_paths", "upgrade_index",
]  # fmt: skip
