"""The reader runtime of the server: every read goes through the micro-batcher.

`RAG.ask` runs in one of the server's worker threads; when it reaches the reader, `_extract` hands its
context to the `MicroBatcher` and waits, and the batcher's worker reads many such contexts in one packed
pass (`ReaderRuntime.extract_batch`). Results equal reading each context alone (tests/rag/test_serve_*).
Outside a running server (batcher not started) it reads directly, as `ReaderRuntime` does.
"""

from __future__ import annotations

from gdn2_rag.batching import BatchSettings, MicroBatcher
from gdn2_rag.config import RAGConfig
from gdn2_rag.reading import ReaderRuntime, ReadRequest, ReadSpan


class BatchedReaderRuntime(ReaderRuntime):
    """A `ReaderRuntime` whose reads are micro-batched across concurrent asks."""

    def __init__(self, *args, batch: BatchSettings | None = None, max_pass_tokens: int = 1_048_576, **kw):
        super().__init__(*args, **kw)
        self.max_pass_tokens = max_pass_tokens
        self.batcher: MicroBatcher[ReadRequest, ReadSpan] = MicroBatcher(
            self._read_batch, batch or BatchSettings()
        )
        self.batching = False

    @classmethod
    def from_config(
        cls, config: RAGConfig, batch: BatchSettings | None = None, max_pass_tokens: int = 1_048_576
    ) -> BatchedReaderRuntime:
        """The runtime `RAG` would build from `config` (same policy, device, threads), batched."""
        return cls(
            config.model_path,
            config.device,
            require=config.require_reader,
            enabled=config.use_reader,
            threads=config.cpu_threads,
            batch=batch,
            max_pass_tokens=max_pass_tokens,
        )

    async def start(self) -> None:
        await self.batcher.start()
        self.batching = True

    async def stop(self) -> None:
        self.batching = False
        await self.batcher.stop()

    def _read_batch(self, requests: list[ReadRequest]) -> list[ReadSpan | Exception]:
        return self.extract_batch(requests, max_pass_tokens=self.max_pass_tokens)

    def _extract(
        self,
        question: str,
        pieces: list,
        max_answer_tokens: int,
        ranks: list[int] | None = None,
        retrieval_prior: float = 0.0,
        repeat_question: bool = False,
    ) -> ReadSpan:
        if not self.batching:
            return super()._extract(question, pieces, max_answer_tokens, ranks, retrieval_prior, repeat_question)
        request = ReadRequest(question, list(pieces), max_answer_tokens, ranks, retrieval_prior, repeat_question)
        return self.batcher.submit_threadsafe(request)
