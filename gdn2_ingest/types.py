"""Plain data passed between the stages: loaded documents, chunks, reports and index statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    """One logical document extracted from a file (a file may hold several: mbox, JSONL, CSV).

    `text` is what the chunker sees; every chunk is an exact slice of it, so char spans are
    offsets into `text`. `line_offset` is added to line numbers so they point into the source
    file when the text is a slice of it that starts at that line. A document whose text is
    rebuilt rather than sliced from the file (an e-mail's chosen headers and decoded body, a
    ticket record's fields) sets `source_lines`: the first and last line of the file it came
    from, which every one of its chunks cites.
    """

    path: str
    text: str
    title: str
    fmt: str  # text | markdown | rst | html | pdf | docx | email | record | man | code
    sub: str = ""  # key of the document inside its file ("" when the file is one document)
    language: str | None = None  # source language for code
    page_starts: list[int] | None = None  # char offset where each PDF page starts (page i+1)
    line_offset: int = 0
    source_lines: tuple[int, int] | None = None


@dataclass
class Chunk:
    """A retrievable slice of a document with the anchors needed to cite it (`path:12-30`, page)."""

    id: int
    path: str
    domain: str
    title: str
    section: str
    text: str
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    page: int | None
    content_hash: str
    doc_hash: str
    doc_id: int = 0
    ordinal: int = 0  # position of the chunk within its document
    sub: str = ""
    tokens: int = 0  # embedder tokens including the 2 special tokens

    @property
    def citation(self) -> str:
        """`path:12-30` (or `path p.3` for PDF pages), what answers print; the path in its display
        form (gdn2_ingest.scan.display_path: a non-UTF-8 name's bytes as '\\xe9' escapes)."""
        from gdn2_ingest.scan import display_path

        path = display_path(self.path)
        if self.page is not None:
            return f"{path} p.{self.page}"
        return f"{path}:{self.line_start}-{self.line_end}"


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest run did; `summary()` is the closing line printed to users."""

    index_dir: str
    files_seen: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    documents: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0  # chunks added minus those whose vector was reused by content hash
    chunks_total: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[SkippedFile] = field(default_factory=list)  # symlinks/aliases of files already ingested
    code_fallbacks: int = 0  # chunk_document(notes=...) fallbacks: code chunked by lines (parser failed)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    generation: str = ""
    changed: bool = False
    compacted: int = 0  # segments merged into one after this update (0: no compaction ran)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        parts = [
            f"{self.files_seen} files ({self.files_new} new, {self.files_changed} changed, "
            f"{self.files_unchanged} unchanged, {self.files_deleted} deleted)",
            f"{self.chunks_added} chunks added ({self.chunks_embedded} embedded),"
            f" {self.chunks_removed} removed, {self.chunks_total} in index",
            f"{len(self.skipped)} skipped"
            + (f", {len(self.duplicates)} duplicates" if self.duplicates else "")
            + (f", {self.code_fallbacks} code files chunked by lines" if self.code_fallbacks else ""),
            f"{self.seconds:.1f}s, {self.chunks_per_second:.1f} chunks/s",
        ]
        return "; ".join(parts)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("skipped", "duplicates")}
        from gdn2_ingest.scan import display_path

        # JSON carries the display form of a path (a non-UTF-8 name's bytes as '\\xe9' escapes): a
        # surrogate-escaped str cannot be written as UTF-8
        out["index_dir"] = display_path(self.index_dir)
        out["skipped"] = [{"path": display_path(s.path), "reason": s.reason} for s in self.skipped]
        out["duplicates"] = [{"path": display_path(s.path), "reason": s.reason} for s in self.duplicates]
        out["chunks_per_second"] = self.chunks_per_second
        return out


@dataclass
class IndexStats:
    documents: int
    files: int
    chunks: int
    per_domain: dict[str, int]
    embedder: str
    dims: int
    bytes: int
    generation: str
    dense_kind: str
    format_version: int
    segments: int = 1  # immutable segments of the generation (gdn2_ingest.segments)
    deleted_chunks: int = 0  # tombstoned chunks still on disk until the next compaction
    vector_store: str = "faiss"  # where the dense vectors live (VectorStoreConfig.describe())
