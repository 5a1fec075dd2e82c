"""Typed results of the pipeline: what `search` and `ask` return, and what `--json` prints.

Every field is plain data (str, int, float, None, lists, dicts) so `to_dict()` is JSON-ready and the
JSON schemas in gdn2_rag/schemas/ (ask, search, passage) describe exactly these objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def _location(span) -> str:
    """`path:line-line` (and `(p.N)` for PDF pages): the string users click on, with the path in its
    display form (gdn2_ingest.scan.display_path: a non-UTF-8 name's bytes as '\\xe9' escapes)."""
    from gdn2_ingest.scan import display_path

    loc = f"{display_path(span.path)}:{span.line_start}-{span.line_end}"
    return f"{loc} (p.{span.page})" if span.page is not None else loc


def _jsonable_span(span) -> dict[str, Any]:
    """`to_dict()` of a Passage or Citation: `path` and `location` in their display form, so the JSON
    can be written as UTF-8 (the object itself keeps the real, surrogate-escaped path)."""
    from gdn2_ingest.scan import display_path

    return {**asdict(span), "path": display_path(span.path), "location": span.location}


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk with its scores and its anchor back to the source file.

    `score` is the fused (reciprocal rank fusion) score; `dense_score` / `bm25_score` are the raw
    scores of each retriever, None when that retriever did not return the chunk.
    """

    chunk_id: int
    path: str
    text: str
    score: float
    line_start: int
    line_end: int
    domain: str = ""
    title: str = ""
    section: str = ""
    page: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None
    rank: int = 0

    @property
    def location(self) -> str:
        return _location(self)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_span(self)


@dataclass(frozen=True)
class Citation:
    """A span of a source file that supports the answer.

    `quote` is the cited text itself; `verified` says that `quote` was found again in the file at
    `line_start..line_end` when the answer was built (`verified_against` = "file"), or in the indexed
    chunk text for formats whose lines cannot be re-read as text, e.g. PDF ("index").
    """

    path: str
    line_start: int
    line_end: int
    quote: str
    chunk_id: int
    page: int | None = None
    section: str = ""
    verified: bool = False
    verified_against: str = "file"

    @property
    def location(self) -> str:
        return _location(self)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_span(self)


@dataclass
class Timings:
    """Wall-clock seconds per stage of one `ask` (or `search`)."""

    retrieve_s: float = 0.0
    assemble_s: float = 0.0
    read_s: float = 0.0
    total_s: float = 0.0
    # one-time costs, non-zero only on the first ask of a RAG object (also inside total_s)
    load_reader_s: float = 0.0
    load_embedder_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


@dataclass
class Answer:
    """The result of `RAG.ask`.

    `mode` is "reader" when the GDN-2 reader produced the span, "retrieval-only" when the answer is the
    best sentence of the best retrieved passages instead (`model["reason"]` says why: --no-reader, a
    reader not shown to beat retrieval, or a confidence under its calibrated threshold; `text` says so
    nowhere else: callers must show `mode`). `reader_error` is set when a reader that should have been
    used failed to load. `abstained`: the best evidence was too weak, so `text` is empty and the
    documents are taken not to hold the answer. `evidence` is the snippet around the answer.
    """

    question: str
    text: str
    mode: str
    citations: list[Citation]
    passages: list[Passage]
    evidence: str = ""
    score: float | None = None
    generated: str | None = None
    context_tokens: int = 0
    context_budget: int = 0
    context_pieces: int = 0
    token_counter: str = ""
    timings: Timings = field(default_factory=Timings)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    reader_error: str | None = None
    abstained: bool = False

    @property
    def used_reader(self) -> bool:
        return self.mode == "reader"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "question": self.question,
            "answer": self.text,
            "mode": self.mode,
            "used_reader": self.used_reader,
            "score": self.score,
            "generated": self.generated,
            "evidence": self.evidence,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "context": {
                "tokens": self.context_tokens,
                "budget": self.context_budget,
                "pieces": self.context_pieces,
                "token_counter": self.token_counter,
            },
            "timings": self.timings.to_dict(),
            "model": self.model,
            "index": self.index,
            "reader_error": self.reader_error,
            "abstained": self.abstained,
        }
