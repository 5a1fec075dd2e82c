"""The reader runtime of the server: the network passes of concurrent asks are micro-batched.

`RAG.ask` runs in one of the server's worker threads. When it reaches the reader, `_extract` lays the
context out (tokenising, in that thread), hands the laid-out input to the `MicroBatcher`, and waits; the
batcher's single worker runs the network over many such inputs in packed varlen passes
(`Reader.logits_batch`); back in its own thread each ask picks its spans from its logits. So the GPU
sees one packed pass at a time and the CPU work of many asks runs side by side. Every answer equals the
one the same context gets read alone (`Reader.logits_batch` is tested for that).
Outside a running server (batcher not started) it reads directly, as `ReaderRuntime` does.
"""

from __future__ import annotations

from gdn2_rag.batching import BatchSettings, MicroBatcher
from gdn2_rag.config import RAGConfig
from gdn2_rag.reading import FUSION_CANDIDATES, ReaderRuntime, ReadSpan, choose_span


class BatchedReaderRuntime(ReaderRuntime):
    """A `ReaderRuntime` whose network passes are micro-batched across concurrent asks."""

    def __init__(self, *args, batch: BatchSettings | None = None, max_pass_tokens: int = 1_048_576, **kw):
        super().__init__(*args, **kw)
        self.max_pass_tokens = max_pass_tokens
        # a batch is at most one packed pass: its callers are answered when that pass ends
        self.batcher: MicroBatcher = MicroBatcher(
            self._logits_batch, batch or BatchSettings(), cost=len, max_cost=max_pass_tokens
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

    def _logits_batch(self, inputs: list) -> list:
        """The batcher's worker: one call over the gathered inputs (packed passes under the token cap)."""
        with self._lock, self._cpu_threads():
            return self._reader.logits_batch(inputs, max_pass_tokens=self.max_pass_tokens)

    def _extract(
        self,
        question: str,
        pieces: list,
        max_answer_tokens: int,
        ranks: list[int] | None = None,
        retrieval_prior: float = 0.0,
        repeat_question: bool = False,
    ) -> ReadSpan:
        if not self.batching or not self.load():
            return super()._extract(
                question, pieces, max_answer_tokens, ranks, retrieval_prior, repeat_question
            )
        reader = self._reader
        ri = reader.prepare(question, pieces, repeat_question=repeat_question)
        if not bool(ri.answer_mask().any()):
            raise ValueError("no context text to read: every piece is empty")
        start, end = self.batcher.submit_threadsafe(ri)
        k = 1 if ranks is None else FUSION_CANDIDATES
        spans = reader.spans(ri, pieces, start, end, k=k, max_answer_tokens=max_answer_tokens)
        return choose_span(spans, ranks, retrieval_prior)
