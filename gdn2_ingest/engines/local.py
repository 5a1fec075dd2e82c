"""The default engine: every step in this process, one file and one batch at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from gdn2_ingest.config import IngestConfig
from gdn2_ingest.embed import Embedder, TokenCounter
from gdn2_ingest.engines.base import FileChunks, FileJob, load_and_chunk


class LocalEngine:
    """In-process engine; torch uses the threads the caller allows (gdn2_rag/threads.py)."""

    name = "local"

    def __init__(self, cfg: IngestConfig, embedder: Embedder, counter: TokenCounter) -> None:
        self.cfg = cfg
        self.embedder = embedder
        self.counter = counter

    def load_chunk(self, jobs: list[FileJob], on_done: Callable[[int], None]) -> list[FileChunks]:
        out = []
        for job in jobs:
            out.append(load_and_chunk(job, self.cfg, self.counter, self.embedder.max_tokens))
            job.data = b""  # the bytes are not needed once chunked
            on_done(1)
        return out

    def embed(self, batches: list[list[str]]) -> Iterator[tuple[int, np.ndarray]]:
        for b, texts in enumerate(batches):
            yield b, self.embedder.embed(texts)

    def close(self) -> None:
        pass
