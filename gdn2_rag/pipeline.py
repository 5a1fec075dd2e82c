"""The library API: `RAG.open(dir)` then `.ingest`, `.search`, `.ask`, `.info`.

    from gdn2_rag import RAG
    rag = RAG.open("my-index", create=True)
    rag.ingest(["contracts/", "docs/"])
    answer = rag.ask("What is the notice period?")
    print(answer.text, [c.location for c in answer.citations])

One `RAG` object is meant to live as long as the app: the reader is loaded once on the first `ask`
and reused; `ask`, `search` and `info` may be called from several threads at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from gdn2_rag.abstain import CALIBRATED_ABSTAIN_BELOW, abstention
from gdn2_rag.assemble import AssembledContext, assemble_context
from gdn2_rag.citations import FileLines, cite_span
from gdn2_rag.config import CPU_READER_CONTEXT_TOKENS, DEFAULT_CONTEXT_TOKENS, RAGConfig
from gdn2_rag.errors import RagError
from gdn2_rag.evidence import select_evidence
from gdn2_rag.filters import DOMAINS, MetadataFilter
from gdn2_rag.reading import ReaderRuntime, ReadSpan
from gdn2_rag.retrieve import HybridRetriever, Retrieved
from gdn2_rag.threads import cpu_threads, limited_threads
from gdn2_rag.types import Answer, Passage, Timings

if TYPE_CHECKING:
    from gdn2_ingest.config import VectorStoreConfig

RETRIEVAL_ONLY = "retrieval-only"
READER = "reader"
# with no top_k, retrieve this many chunks per budget token: enough to fill it with ~250-token chunks
CHUNKS_PER_TOKEN = 1 / 128
_WORD = re.compile(r"\w")
EVIDENCE_CHARS = 800
MAX_CACHED_COUNTS = 2_000_000


def _ingest_errors() -> tuple[type[BaseException], ...]:
    try:
        from gdn2_ingest.errors import IngestError
    except ImportError:
        return ()
    return (IngestError,)


class RAG:
    """Question answering over one index folder. Build with `RAG.open`; see the module docstring."""

    def __init__(
        self, index_dir: str | Path, index=None, config: RAGConfig | None = None, reader=None, embedder=None
    ) -> None:
        """Prefer `RAG.open`. `index` / `reader` inject ready objects (tests, apps sharing them);
        `embedder` replaces the index's recorded query embedder (an `gdn2_ingest.embed.Embedder` matching it).
        """
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.config = config or RAGConfig()
        self._index = index
        self._index_lock = threading.RLock()
        self._stats_cache = None
        # the files each path glob matches in the open view (pushed into a Qdrant index's dense search)
        self._glob_files: tuple = (None, {})
        self._embedder_ready = None
        # reader-token counts of chunks, by (counter, content hash): tokenising is most of assembly
        self._token_counts: dict = {}
        self._reader = reader
        self._reader_lock = threading.Lock()

    @classmethod
    def open(
        cls, index_dir: str | Path, create: bool = False, config: RAGConfig | None = None, embedder=None
    ) -> RAG:
        """Open the index at `index_dir`; with `create`, a missing folder is fine (call `ingest` next).

        Raises RagError when there is no index and `create` is False.
        """
        rag = cls(index_dir, config=config, embedder=embedder)
        if not create:
            rag._open_index()
        return rag

    # index -----------------------------------------------------------------------------------------

    def _open_index(self):
        with self._index_lock:
            if self._index is None:
                if not self.index_dir.exists():
                    raise RagError(
                        f"no index at {self.index_dir}; "
                        f"run `rag ingest PATH... --index {self.index_dir}` first"
                    )
                from gdn2_ingest import Index

                try:
                    self._index = Index.open(self.index_dir, embedder=self.embedder)
                except _ingest_errors() as exc:
                    raise RagError(str(exc)) from exc
            return self._index

    @property
    def index(self):
        return self._open_index()

    def _nonempty_index(self):
        index = self._open_index()
        if self._stats_of(index).chunks == 0:
            raise RagError(f"the index at {self.index_dir} is empty; ingest some documents first")
        return index

    def _stats_of(self, index):
        """Stats of an open index view, computed once: a view is one immutable generation."""
        with self._index_lock:
            if self._stats_cache is None or self._stats_cache[0] is not index:
                self._stats_cache = (index, index.stats())
            return self._stats_cache[1]

    def ingest(
        self,
        paths,
        domain: str = "auto",
        progress: bool = False,
        max_file_bytes: int | None = None,
        notify=None,
        engine: str = "local",
        engine_address: str | None = None,
        engine_workers: int | None = None,
        vector_store: VectorStoreConfig | None = None,
    ):
        """Add or update documents (incremental); returns ingest's IngestReport.

        max_file_bytes: skip larger files (None: IngestConfig's default, 50 MB); notify: called with
        one-off lines for the user (a wait for the index lock). engine, engine_address,
        engine_workers: where loading, chunking and embedding run (IngestConfig; "ray" needs the
        `ray` extra); the index is the same on every engine. vector_store: where a new index keeps
        its dense vectors (gdn2_ingest.config.VectorStoreConfig: FAISS by default, or a Qdrant
        collection); an existing index keeps the store its manifest records (None uses it; another
        one is a RagError).
        """
        from gdn2_ingest import IngestConfig, ingest_paths

        if isinstance(paths, str | Path):
            paths = [paths]
        paths = [str(p) for p in paths]
        if domain not in (*DOMAINS, "auto"):
            raise RagError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}, auto")
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise RagError(f"no such file or folder: {missing[0]}")
        with self._index_lock:
            try:
                limits = {} if max_file_bytes is None else {"max_file_bytes": max_file_bytes}
                cfg = IngestConfig(
                    domain=domain, engine=engine, engine_address=engine_address,
                    engine_workers=engine_workers, vector_store=vector_store, **limits,
                )  # fmt: skip
                try:
                    cfg.validate()
                except ValueError as exc:
                    raise RagError(str(exc)) from exc
                if self.embedder is not None:
                    cfg.embedder_factory = lambda: self.embedder
                # embedding on the CPU: the cores this process really has (gdn2_rag/threads.py)
                with limited_threads(cpu_threads(self.config.cpu_threads)):
                    report = ingest_paths(self.index_dir, paths, cfg, progress=progress, notify=notify)
            except _ingest_errors() as exc:
                raise RagError(str(exc)) from exc
            # the read-only view is stale now: reopen on next use
            self._index = None
        return report

    def remove(self, paths, notify=None):
        """Delete the indexed files at or under `paths` (they may be gone from disk); returns ingest's
        IngestReport. A path the index holds no file under is a RagError, before anything changes."""
        from gdn2_ingest.segments_write import remove_paths

        if isinstance(paths, str | Path):
            paths = [paths]
        return self._write(remove_paths, self.index_dir, [str(p) for p in paths], notify=notify)

    def compact(self, notify=None):
        """Merge the index's segments into one, dropping deleted chunks for good (results unchanged)."""
        from gdn2_ingest.segments_write import compact_index

        return self._write(compact_index, self.index_dir, notify=notify)

    def upgrade(self, notify=None):
        """Convert an index of the previous release's format to the current one in place, without
        re-embedding (gdn2_ingest.upgrade); returns its UpgradeReport (`changed` False: nothing to do)."""
        from gdn2_ingest.upgrade import upgrade_index

        return self._write(upgrade_index, self.index_dir, notify=notify)

    def _write(self, fn, *args, **kwargs):
        with self._index_lock:
            try:
                report = fn(*args, **kwargs)
            except _ingest_errors() as exc:
                raise RagError(str(exc)) from exc
            # the read-only view is stale now: reopen on next use
            self._index = None
        return report

    def info(self):
        """Index statistics (ingest's IndexStats)."""
        return self._stats_of(self._open_index())

    def index_identity(self) -> dict:
        stats = self.info()
        return {"path": str(self.index_dir), **jsonable(dataclasses.asdict(stats))}

    # reader ----------------------------------------------------------------------------------------

    @property
    def reader(self) -> ReaderRuntime:
        with self._reader_lock:
            if self._reader is None:
                cfg = self.config
                self._reader = ReaderRuntime(
                    cfg.model_path,
                    cfg.device,
                    require=cfg.require_reader,
                    enabled=cfg.use_reader,
                    threads=cfg.cpu_threads,
                )
            return self._reader

    # search and ask --------------------------------------------------------------------------------

    def _retrieve(self, query: str, k: int, flt: MetadataFilter, candidates: int | None = None) -> Retrieved:
        index = self._nonempty_index()
        with self._index_lock:
            try:
                if self._glob_files[0] is not index:
                    self._glob_files = (index, {})
                retriever = HybridRetriever(index, self.config, glob_files=self._glob_files[1])
                return retriever.retrieve(query, k, flt, candidates=candidates)
            except _ingest_errors() as exc:
                raise RagError(str(exc)) from exc

    def _warm_embedder(self) -> float:
        """Load the index's query embedder once (it loads lazily on the first dense search); seconds spent."""
        index = self._nonempty_index()
        if self._embedder_ready is index or self.config.dense_weight == 0:
            return 0.0
        t = time.perf_counter()
        with self._index_lock:
            embedder = getattr(index, "embedder", None)
            if embedder is not None:
                try:
                    with limited_threads(self.config.retrieval_threads):
                        embedder.embed(["warm up"])
                except _ingest_errors() as exc:
                    raise RagError(str(exc)) from exc
            self._embedder_ready = index
        return time.perf_counter() - t

    def search(
        self, query: str, k: int = 10, domain: str | None = None, path_glob: str | None = None
    ) -> list[Passage]:
        """The `k` best passages for `query` (hybrid dense + BM25, fused, filtered, de-duplicated)."""
        flt = _filter(domain, path_glob)
        return self._retrieve(query, k, flt).passages

    def ask(
        self,
        question: str,
        context_tokens: int | None = None,
        top_k: int | None = None,
        domain: str | None = None,
        path_glob: str | None = None,
        generate: bool | None = None,
        on_stage: Callable[[str], None] | None = None,
        on_passages: Callable[[list[Passage]], None] | None = None,
    ) -> Answer:
        """Answer `question` from the index with cited file lines.

        Steps: retrieve (hybrid) -> assemble up to `context_tokens` reader tokens -> read with the
        GDN-2 reader (or pick the best passage's best sentence when no reader is available, with
        `mode="retrieval-only"`) -> map the answer span to verified `path:line-line` citations.
        With `generate` (or `config.generate`), a reader with an LM head also writes `Answer.generated`.
        `on_stage(name)` is called as each stage starts (a CLI spinner shows it); `on_passages(passages)`
        once the context is assembled, with the passages it holds, before they are read (a server
        streams them while the reader works).
        """
        check_question(question)
        stage = on_stage or (lambda name: None)
        question = question.strip()
        budget = self.config.context_tokens if context_tokens is None else context_tokens
        if budget is not None and budget < 64:
            raise RagError(f"--context-tokens must be at least 64, got {budget}")
        if top_k is not None and top_k < 1:
            raise RagError(f"--top-k must be at least 1, got {top_k}")
        flt = _filter(domain, path_glob)
        timings = Timings()
        t0 = time.perf_counter()

        generate = self.config.generate if generate is None else generate
        reader = self.reader
        # one-time costs of the first ask are reported apart from the stages
        first = not reader.loaded
        if first and reader.policy != "off":
            stage("loading the reader")
        if generate and not reader.can_generate:
            raise RagError(
                "--generate needs a reader checkpoint with an LM head"
                + (f" ({reader.reason})" if reader.reason else "; this one only extracts spans")
            )
        use_reader = reader.available
        if budget is None:
            on_cpu = use_reader and reader.device == "cpu"
            budget = CPU_READER_CONTEXT_TOKENS if on_cpu else DEFAULT_CONTEXT_TOKENS
        timings.load_reader_s = reader.load_seconds if use_reader and first else 0.0
        timings.load_embedder_s = self._warm_embedder()
        k = top_k or self.config.top_k or max(self.config.candidates, int(budget * CHUNKS_PER_TOKEN))
        stage("retrieving")
        t = time.perf_counter()
        retrieved = self._retrieve(question, k, flt, candidates=k)
        timings.retrieve_s = time.perf_counter() - t

        stage(f"assembling up to {budget} tokens")
        t = time.perf_counter()
        scores = {p.chunk_id: p.score for p in retrieved.passages}
        context = assemble_context(
            question,
            retrieved.chunks,
            scores,
            budget,
            reader.layout(repeat_question=self.config.repeat_question),
            merge_gap_lines=self.config.merge_gap_lines,
            count_cache=self._count_cache(),
        )
        timings.assemble_s = time.perf_counter() - t
        if retrieved.passages and not context.pieces:
            raise RagError(
                f"a context budget of {budget} tokens holds none of the {len(retrieved.passages)} retrieved "
                "passages; raise --context-tokens"
            )

        if on_passages is not None:
            used = set(context.chunk_ids)
            on_passages([p for p in retrieved.passages if p.chunk_id in used])
        stage(f"reading {context.tokens} tokens" if use_reader else "choosing the evidence")
        t = time.perf_counter()
        span, note, abstain = None, "", ""
        if context.pieces:
            if use_reader:
                span = reader.extract(
                    context,
                    max_answer_tokens=self.config.max_answer_tokens,
                    retrieval_prior=self.config.retrieval_prior,
                )
                if span.score < reader.threshold:
                    note = (
                        f"the reader's confidence {span.score:.2f} is under its calibrated threshold "
                        f"{reader.threshold:.2f}; answering from the retrieved evidence"
                    )
                    use_reader, span = False, None
            if span is None:
                span = self._evidence_span(question, context, retrieved)
                abstain = self._abstention(question, retrieved)
        if generate and span is not None:
            span = dataclasses.replace(span, generated=reader.generate(context, self.config.max_new_tokens))
        timings.read_s = time.perf_counter() - t

        answer = self._build_answer(question, context, retrieved, span, use_reader, note, abstain)
        timings.total_s = time.perf_counter() - t0
        answer.timings = timings
        return answer

    async def aask(self, question: str, *, executor: Executor | None = None, **options) -> Answer:
        """`ask` for asyncio apps: runs in `executor` (None: the loop's default pool), so the event loop
        never blocks on retrieval or the reader. Takes `ask`'s keyword options."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(self.ask, question, **options))

    async def asearch(self, query: str, *, executor: Executor | None = None, **options) -> list[Passage]:
        """`search` for asyncio apps (see `aask`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(self.search, query, **options))

    def _build_answer(
        self,
        question: str,
        context: AssembledContext,
        retrieved: Retrieved,
        span: ReadSpan | None,
        use_reader: bool,
        note: str = "",
        abstain: str = "",
    ) -> Answer:
        citations, evidence = [], ""
        if span is not None and abstain:
            note = (note + "; " if note else "") + abstain
            span = dataclasses.replace(span, text="", char_end=span.char_start)
        if span is not None and span.char_end > span.char_start:
            chunk_texts = {int(c.id): c.text for c in retrieved.chunks}
            citations = cite_span(
                context, span.piece_index, span.char_start, span.char_end, chunk_texts, FileLines()
            )
            evidence = _evidence(context.pieces[span.piece_index].text, span.char_start, span.char_end)
        used = set(context.chunk_ids)
        model = self.reader.identity
        if note:
            model = {**model, "reason": note}
        return Answer(
            question=question,
            text=span.text.strip() if span is not None else "",
            mode=READER if use_reader else RETRIEVAL_ONLY,
            citations=citations,
            passages=[p for p in retrieved.passages if p.chunk_id in used],
            evidence=evidence,
            score=None if span is None else span.score,
            generated=None if span is None else span.generated,
            context_tokens=context.tokens,
            context_budget=context.budget,
            context_pieces=len(context.pieces),
            token_counter=context.counter,
            model=model,
            index=self.index_identity(),
            reader_error=self.reader.error or None,
            abstained=bool(abstain),
        )

    def _evidence_span(self, question: str, context: AssembledContext, retrieved: Retrieved) -> ReadSpan:
        """The best evidence sentence of the best passages (gdn2_rag/evidence.py).

        The span's score is the evidence's cosine to the question where the index has an embedder (else
        its lexical score).
        """
        index = self._open_index()
        semantic = self.config.evidence == "semantic" and self.config.dense_weight > 0
        embedder = getattr(index, "embedder", None) if semantic else None
        with self._index_lock, limited_threads(self.config.retrieval_threads if embedder else None):
            ev = select_evidence(
                question,
                context,
                [p.chunk_id for p in retrieved.passages],
                embedder,
                answer_types=self.config.answer_types,
            )
        text = context.pieces[ev.piece_index].text[ev.char_start : ev.char_end]
        strength = ev.best_cosine if ev.best_cosine is not None else ev.score
        return ReadSpan(ev.piece_index, ev.char_start, ev.char_end, text, strength)

    def abstain_threshold(self) -> float:
        """`config.abstain_below`, or when None the value calibrated for the index's embedder (0: never)."""
        if self.config.abstain_below is not None:
            return self.config.abstain_below
        return CALIBRATED_ABSTAIN_BELOW.get(self.info().embedder, 0.0)

    def _abstention(self, question: str, retrieved: Retrieved) -> str:
        """Why the answer abstains ("" when it does not, or when abstention is off): gdn2_rag.abstain."""
        if not self.config.abstain:
            return ""
        return abstention(question, retrieved.passages, self.abstain_threshold(), self._open_index())

    def _count_cache(self) -> dict:
        # bounded: a few million ints at most, dropped whole when full
        if len(self._token_counts) > MAX_CACHED_COUNTS:
            self._token_counts = {}
        return self._token_counts

    def close(self) -> None:
        """Drop the index view and the reader (frees memory; the object can be used again)."""
        with self._index_lock, self._reader_lock:
            self._index = None
            self._reader = None
            self._token_counts = {}

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_question(question) -> None:
    """A question must hold a word: "" and "?!" are user errors, not questions."""
    if not isinstance(question, str) or not question.strip():
        raise RagError("the question is empty")
    if not _WORD.search(question):
        raise RagError(f"the question {question.strip()!r} has no words; ask in words")


def _filter(domain: str | None, path_glob: str | None) -> MetadataFilter:
    try:
        return MetadataFilter(domain=domain, path_glob=path_glob)
    except ValueError as exc:
        raise RagError(str(exc)) from exc


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _evidence(text: str, start: int, end: int) -> str:
    """Whole lines around the span, capped at EVIDENCE_CHARS (centred on the span)."""
    lo = text.rfind("\n", 0, start) + 1
    hi = text.find("\n", end)
    hi = len(text) if hi < 0 else hi
    if hi - lo > EVIDENCE_CHARS:
        pad = max(0, (EVIDENCE_CHARS - (end - start)) // 2)
        lo, hi = max(lo, start - pad), min(hi, end + pad)
    return text[lo:hi].strip()
