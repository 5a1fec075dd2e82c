"""The reader runtime of the server: the network passes of concurrent asks are micro-batched.

`RAG.ask` runs in one of the server's worker threads. When it reaches the reader, `_extract` lays the
context out (in that thread, from the token ids the reader kept when assembly counted the chunks),
hands the laid-out input to the `MicroBatcher`, and waits; the batcher's single worker reads many such
inputs in packed varlen passes and picks each one's token spans on the GPU, where the logits are
(`Reader.token_spans_batch`); back in its own thread each ask turns its token spans into text. So the
GPU sees one packed pass at a time and the CPU work of many asks runs side by side. Every answer equals
the one the same context gets read alone (tests/rag/test_serve_read_batch.py).
Outside a running server (batcher not started), or with a reader that has no packed multi-request read
(reader v3), it reads directly, one ask at a time, as `ReaderRuntime` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gdn2_rag.batching import BatchSettings, MicroBatcher
from gdn2_rag.config import RAGConfig
from gdn2_rag.reading import FUSION_CANDIDATES, ReaderRuntime, ReadSpan, choose_span
from gdn2_rag.serve.settings import ServeSettings

if TYPE_CHECKING:
    from gdn2_model.prompt import ReaderInput


@dataclass(frozen=True)
class ReadJob:
    """One ask's read, as the batcher carries it: the laid-out input and how many spans of what length."""

    input: ReaderInput
    k: int
    max_answer_tokens: int

    def __len__(self) -> int:
        return len(self.input)


class BatchedReaderRuntime(ReaderRuntime):
    """A `ReaderRuntime` whose network passes are micro-batched across concurrent asks."""

    def __init__(
        self,
        *args,
        batch: BatchSettings | None = None,
        max_pass_tokens: int = ServeSettings.max_pass_tokens,
        **kw,
    ):
        super().__init__(*args, **kw)
        self.max_pass_tokens = max_pass_tokens
        # a batch is at most one packed pass: its callers are answered when that pass ends
        self.batcher: MicroBatcher = MicroBatcher(
            self._read_batch, batch or BatchSettings(), cost=len, max_cost=max_pass_tokens
        )
        self.batching = False

    @classmethod
    def from_config(
        cls,
        config: RAGConfig,
        batch: BatchSettings | None = None,
        max_pass_tokens: int = ServeSettings.max_pass_tokens,
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

    def _read_batch(self, jobs: list[ReadJob]) -> list:
        """The batcher's worker: token spans of the gathered reads (packed passes under the token cap)."""
        with self._lock, self._cpu_threads():
            return self._reader.token_spans_batch(
                [j.input for j in jobs],
                [j.k for j in jobs],
                [j.max_answer_tokens for j in jobs],
                max_pass_tokens=self.max_pass_tokens,
            )

    def _extract(
        self,
        question: str,
        pieces: list,
        max_answer_tokens: int,
        ranks: list[int] | None = None,
        retrieval_prior: float = 0.0,
        repeat_question: bool = False,
    ) -> ReadSpan:
        if not self.batching or not self.load() or not hasattr(self._reader, "token_spans_batch"):
            # reader v3 has no packed multi-request read: its reads run one at a time under the lock
            return super()._extract(
                question, pieces, max_answer_tokens, ranks, retrieval_prior, repeat_question
            )
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        from gdn2_model.spans import span_text

        ri = self._reader.prepare(question, pieces, repeat_question=repeat_question)
        if not bool(ri.answer_mask().any()):
            raise ValueError("no context text to read: every piece is empty")
        k = 1 if ranks is None else FUSION_CANDIDATES
        found = self.batcher.submit_threadsafe(ReadJob(ri, k, max_answer_tokens))
        spans = [span_text(ri, pieces, s) for s in found]
        return choose_span(spans, ranks, retrieval_prior)
