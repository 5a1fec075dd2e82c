"""Document -> token-exact chunks for its domain (legal, support, code).

Steps of `chunk_document`:
  1. one tokenizer pass gives every token's start offset, so any span's size is a binary search;
  2. the domain chunker cuts the text into structural pieces (clauses, sections, Q&A, definitions);
  3. `pack` fills chunks up to the budget, splitting only pieces that are too large;
  4. every chunk (with its embedded title prefix) is counted exactly, special tokens included, and
     any that would exceed the embedder's window is split again: text is never truncated.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from gdn2_ingest.chunking.base import PARAGRAPH, Piece, Span, TokenIndex, boundaries, pack, paragraphs
from gdn2_ingest.chunking.code import CodeFallback, code_pieces, log
from gdn2_ingest.chunking.detect import detect_domain
from gdn2_ingest.chunking.prose import prose_pieces, section_marks
from gdn2_ingest.embed import TokenCounter
from gdn2_ingest.types import Document

# tokens reserved for the "title: section" line embedded before each chunk
PREFIX_TOKENS = 24


@dataclass
class ChunkDraft:
    """A chunk before it has an id: exact span, anchors and the text the embedder sees."""

    start: int
    end: int
    text: str
    section: str
    line_start: int
    line_end: int
    page: int | None
    embed_text: str
    tokens: int


def _prefix(counter: TokenCounter, title: str, section: str) -> str:
    p = f"{title}: {section}" if section and section not in title else title
    p = " ".join(p.split())
    off = counter.offsets(p)
    if len(off) > PREFIX_TOKENS:
        p = p[: int(off[PREFIX_TOKENS])].rstrip()
    return p


def _pieces(doc: Document, domain: str, tix: TokenIndex, budget: int, notes: list[str] | None) -> list[Piece]:
    if domain == "code" or doc.fmt == "code":
        try:
            got = code_pieces(doc.text, doc.language, tix, budget)
        except CodeFallback as exc:
            reason = f"{exc}; chunked by lines"
            log.warning("%s: %s", doc.path.encode("utf-8", "backslashreplace").decode(), reason)
            if notes is not None:
                notes.append(reason)
            got = None
        if got is not None:
            return got
        return [Piece(s, e, "", PARAGRAPH, prose=False) for s, e in paragraphs(doc.text)]
    return prose_pieces(doc.text, domain, tix, budget)


def _trim(text: str, s: Span) -> Span | None:
    a, b = s.start, s.end
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return Span(a, b, s.section) if b > a else None


def _split_at(s: Span, cuts: list[int]) -> list[Span]:
    """`s` cut at every offset of `cuts` strictly inside it."""
    inner = [c for c in cuts if s.start < c < s.end]
    edges = [s.start, *inner, s.end]
    return [Span(a, b, s.section) for a, b in zip(edges, edges[1:], strict=False)]


def _halve(text: str, s: Span, prose: bool) -> list[Span]:
    """Split an over-long span near its middle at the closest boundary."""
    mid = (s.start + s.end) // 2
    cuts = boundaries(text, s.start, s.end, prose) or [text.rfind(" ", s.start, mid) + 1 or mid]
    c = min(cuts, key=lambda x: abs(x - mid))
    if not s.start < c < s.end:
        c = mid
    return [Span(s.start, c, s.section), Span(c, s.end, s.section)]


def chunk_document(
    doc: Document, domain: str, counter: TokenCounter, target_tokens: int, overlap: int, max_tokens: int,
    title_prefix: bool = True, notes: list[str] | None = None,
) -> tuple[str, list[ChunkDraft]]:  # fmt: skip
    """(resolved domain, chunks) for one document; see the module docstring for the steps.

    `notes` (when given) receives one reason per fallback taken, e.g. a code file whose parser
    failed and that was chunked by lines instead; the pipeline counts them in the report."""
    if domain == "auto":
        domain = detect_domain(doc)
    text = doc.text
    tix = TokenIndex(counter.offsets(text))
    reserve = PREFIX_TOKENS + 1 if title_prefix else 0
    budget = min(target_tokens, max_tokens - reserve) - counter.special
    spans = [
        t
        for s in pack(text, _pieces(doc, domain, tix, budget, notes), tix, budget, overlap)
        if (t := _trim(text, s))
    ]
    prose = domain != "code"
    nl = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10)
    base = max(1, doc.line_offset)
    page_starts = np.asarray(doc.page_starts) if doc.page_starts else None
    relabel = lambda s: s  # noqa: E731
    if doc.page_starts:
        # a chunk never spans two PDF pages, so its one page number is always the right citation;
        # its section is then recomputed for its own text: the clause in force where it starts (one
        # running on from the page before) and every clause or heading that starts inside it
        marks = section_marks(text, domain)
        mark_at = [m[0] for m in marks]

        def relabel(s: Span) -> Span:
            i = bisect.bisect_right(mark_at, s.start)
            j = bisect.bisect_left(mark_at, s.end)
            labels = list(dict.fromkeys(lab for _, lab in marks[max(0, i - 1) : j]))
            return Span(s.start, s.end, " | ".join(labels[:4]))

        spans = [
            relabel(t) for s in spans for piece in _split_at(s, doc.page_starts) if (t := _trim(text, piece))
        ]
    prefixes: dict[str, str] = {}
    drafts: list[ChunkDraft] = []
    pending = spans
    while pending:
        embed_texts = []
        for s in pending:
            if title_prefix:
                key = s.section
                if key not in prefixes:
                    prefixes[key] = _prefix(counter, doc.title, s.section)
                embed_texts.append(prefixes[key] + "\n" + text[s.start : s.end])
            else:
                embed_texts.append(text[s.start : s.end])
        counts = counter.count(embed_texts)
        retry: list[Span] = []
        for s, et, n in zip(pending, embed_texts, counts, strict=True):
            if n > max_tokens:
                retry.extend(relabel(t) for h in _halve(text, s, prose) if (t := _trim(text, h)))
                continue
            if doc.source_lines is not None:
                ls, le = doc.source_lines
            else:
                ls = int(np.searchsorted(nl, s.start, "left")) + base
                le = int(np.searchsorted(nl, s.end - 1, "left")) + base
            page = int(np.searchsorted(page_starts, s.start, "right")) if page_starts is not None else None
            drafts.append(ChunkDraft(s.start, s.end, text[s.start : s.end], s.section, ls, le, page, et, n))
        pending = retry
    drafts.sort(key=lambda d: (d.start, d.end))
    return domain, drafts


__all__ = ["ChunkDraft", "chunk_document", "detect_domain"]
