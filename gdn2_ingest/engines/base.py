"""The engine interface and the per-file step every engine runs: bytes -> documents -> chunk drafts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gdn2_ingest.chunking import ChunkDraft, chunk_document
from gdn2_ingest.config import ENGINES, IngestConfig
from gdn2_ingest.loaders import SkipFile, load_file
from gdn2_ingest.types import Document

if TYPE_CHECKING:
    from gdn2_ingest.embed import Embedder, TokenCounter

__all__ = ["ENGINES", "Engine", "FileChunks", "FileJob", "load_and_chunk", "open_engine"]


@dataclass
class FileJob:
    """One new or changed file: its path and the bytes the writer hashed (what is chunked is what
    was hashed, even if the file changes while the ingest runs)."""

    path: str
    data: bytes


@dataclass
class FileChunks:
    """What one file became: (document, resolved domain, chunk drafts) per document, or a skip reason.

    `fallbacks` counts chunker fallbacks taken (a code file whose parser failed, chunked by lines)."""

    docs: list[tuple[Document, str, list[ChunkDraft]]] = field(default_factory=list)
    skip: str = ""
    fallbacks: int = 0


def load_and_chunk(job: FileJob, cfg: IngestConfig, counter: TokenCounter, max_tokens: int) -> FileChunks:
    """Load one file and chunk its documents; a bad file becomes a skip reason, never an exception,
    so one bad file never aborts an ingest on any engine."""
    from pathlib import Path

    try:
        docs = load_file(Path(job.path), job.data, cfg.record_text_fields, cfg.max_expanded_bytes)
        out = FileChunks()
        notes: list[str] = []
        for d in docs:
            dom, drafts = chunk_document(
                d, cfg.domain, counter, cfg.target_tokens, cfg.overlap_tokens, max_tokens,
                cfg.title_prefix, notes=notes,
            )  # fmt: skip
            out.docs.append((d, dom, drafts))
        out.fallbacks = len(notes)
        return out
    except SkipFile as exc:
        return FileChunks(skip=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file never aborts the run; reason is kept
        return FileChunks(skip=f"failed to parse ({type(exc).__name__}: {str(exc)[:120]})")


class Engine(Protocol):
    """Runs the parallel steps of an ingest; the writer keeps everything that decides the index."""

    name: str

    def load_chunk(self, jobs: list[FileJob], on_done: Callable[[int], None]) -> list[FileChunks]:
        """One FileChunks per job, in the jobs' order; `on_done(n)` after each n files."""
        ...

    def embed(self, batches: list[list[str]]) -> Iterator[tuple[int, np.ndarray]]:
        """(batch number, float32 vectors of that batch's texts), in any order, one per batch."""
        ...

    def close(self) -> None: ...


def open_engine(cfg: IngestConfig, embedder: Embedder, counter: TokenCounter) -> Engine:
    """The engine `cfg.engine` names; the caller closes it (which releases a Ray connection it made).

    `embedder` and `counter` are this process's: the local engine uses them; the Ray engine builds
    its own in each worker from `cfg` (model folder, device, dtype, batch size or the factory) and
    connects to Ray only when it is first given work."""
    if cfg.engine == "ray":
        from gdn2_ingest.engines.ray_engine import RayEngine

        return RayEngine(cfg, embedder.max_tokens)
    from gdn2_ingest.engines.local import LocalEngine

    return LocalEngine(cfg, embedder, counter)
