"""Pipeline knobs in one dataclass (nanoGPT-style config): retrieval, fusion, context layout, reader."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_CONTEXT_TOKENS = 100_000
# the reader's read stage on CPU runs at ~850 tokens/s on two idle cores (README): 100k tokens take minutes.
# 4k: on the hand-written dev set the readers score the same from 4k to 100k tokens (bench/results/reader.md)
CPU_READER_CONTEXT_TOKENS = 4_000


@dataclass(frozen=True)
class RAGConfig:
    """Settings of `RAG`; every field can be overridden per call where it makes sense.

    Args:
        dense_weight / bm25_weight: weights of each ranked list in reciprocal rank fusion.
        rrf_k: the RRF constant (60 in Cormack et al.); larger flattens the rank curve.
        candidates: how many hits each retriever returns before fusion (per `search`/`ask`).
        top_k: passages kept after fusion for `ask` when the caller gives none; None fills the budget.
        dedup_threshold: Jaccard similarity of word 5-shingles above which a chunk is a near-duplicate
            of a better-ranked one and is dropped (1.0 keeps everything but exact copies).
        context_tokens: reader-token budget for the assembled context; None: 100k, or 4k when the
            reader runs on CPU (a 100k-token read there takes about two minutes).
        repeat_question: a v2-reader setting: lay the question out again after the context ("read
            twice"), <|question|> question a second time before <|answer|>
            (gdn2_model.prompt.build_reader_input), and the context budget counts it. The shipped reader
            v3 reads the question beside every window of the context, so it refuses the setting (RagError).
            For v2 the question already comes first and the reader is causal, so the repeat cannot change
            what its span heads see of the context; a generating v2 checkpoint (LM head) reads it before it
            answers. Its effect on answers was not measured.
        merge_gap_lines: chunks of one document whose line spans are this close are merged into one piece.
        retrieval_prior: weight of the retrieval rank when the reader's spans are chosen: the answer
            maximises log P_reader(span) - retrieval_prior * log(1 + rank of its passage). 0 lets the reader
            alone decide. The default 3 raised citation accuracy on paraphrased questions from 0.72-0.78 to
            0.86-0.89 at no cost on generated QA (bench/results/rag.md).
        model_path: reader checkpoint folder, v3 or v2 (gdn2_model.readers tells them apart); None means
            the shipped reader v3 (gdn2_model/checkpoints/v3).
        device: "cpu", "cuda" or None (cuda when available).
        require_reader: raise instead of falling back to a retrieval-only answer when no reader loads.
        use_reader: False answers retrieval-only on purpose (fast, no model), and says so.
        generate: also generate a free-text answer (greedy, `max_new_tokens`) after the extractive one;
            needs a checkpoint with an LM head.
        retrieval_threads: torch and FAISS threads while one query is embedded and searched (restored
            after). One short query gains nothing from more threads, and on a busy 2-core machine two
            threads made `search` 45x slower (530 ms vs 12 ms p50, bench/results/rag.md); None leaves
            the process settings alone.
        cpu_threads: torch threads for CPU reading and ingest embedding; None picks the cores this
            process can really use (affinity, cgroup quota, less what other work keeps busy; see
            gdn2_rag/threads.py). `rag --threads N` sets it.
        abstain: when no reader span is used, answer "the documents do not seem to answer this" if the
            question names something no indexed document mentions, or if no retrieved passage has a dense
            cosine to the question of at least `abstain_below` (gdn2_rag.abstain). Off by default: on the
            hand-written dev set it caught 70 % of the unanswerable questions but also declined 9.8 % of
            the answerable ones (precision 0.51), which costs more than it saves
            (bench/results/reader.md). `rag ask --abstain` turns it on.
        abstain_below: the cosine threshold; None uses the value calibrated for the index's embedder
            (gdn2_rag.abstain.CALIBRATED_ABSTAIN_BELOW), 0 for embedders without one.
        evidence: how the evidence sentence is chosen when no reader span is used: "semantic" scores
            the best passages' sentences with the index's embedder as well as by shared rare words
            (gdn2_rag/evidence.py); "lexical" by shared rare words alone (no model call).
        answer_types: prefer evidence sentences that hold the kind of answer the question's form asks for
            (a number, a date, a default, a name, an exception, a path, an option: gdn2_rag/answer_type.py).
            On by default: dev answer+citation 0.356 -> 0.439 (bench/results/reader.md); False restores the
            untyped choice.
    """

    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    rrf_k: int = 60
    candidates: int = 200
    top_k: int | None = None
    dedup_threshold: float = 0.9
    context_tokens: int | None = None
    repeat_question: bool = False
    merge_gap_lines: int = 1
    retrieval_prior: float = 3.0
    max_answer_tokens: int = 32
    model_path: str | None = None
    device: str | None = None
    require_reader: bool = False
    use_reader: bool = True
    generate: bool = False
    max_new_tokens: int = 64
    retrieval_threads: int | None = 1
    cpu_threads: int | None = None
    abstain: bool = False
    abstain_below: float | None = None
    evidence: str = "semantic"
    answer_types: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dense_weight < 0 or self.bm25_weight < 0 or self.dense_weight + self.bm25_weight == 0:
            raise ValueError(
                "fusion weights must be >= 0 and not both 0 "
                f"(dense={self.dense_weight}, bm25={self.bm25_weight})"
            )
        if self.rrf_k < 1:
            raise ValueError(f"rrf_k must be >= 1, got {self.rrf_k}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 < self.dedup_threshold <= 1.0:
            raise ValueError(f"dedup_threshold must be in (0, 1], got {self.dedup_threshold}")
        if self.context_tokens is not None and self.context_tokens < 64:
            raise ValueError(f"context_tokens must be >= 64, got {self.context_tokens}")
        if self.retrieval_prior < 0:
            raise ValueError(f"retrieval_prior must be >= 0, got {self.retrieval_prior}")
        if self.retrieval_threads is not None and self.retrieval_threads < 1:
            raise ValueError(f"retrieval_threads must be >= 1 or None, got {self.retrieval_threads}")
        if self.evidence not in ("semantic", "lexical"):
            raise ValueError(f"evidence must be 'semantic' or 'lexical', got {self.evidence!r}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1 or None, got {self.cpu_threads}")
        if self.require_reader and not self.use_reader:
            raise ValueError("require_reader and use_reader=False contradict each other")
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def with_(self, **changes) -> RAGConfig:
        """A copy with some fields changed (None values are ignored, so CLI defaults pass through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
