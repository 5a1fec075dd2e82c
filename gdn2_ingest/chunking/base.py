"""Token-budgeted packing of structural pieces into chunks, shared by every domain.

A domain chunker cuts a document into ordered `Piece`s (a clause, a Q&A pair, a function) and says
how strong the boundary before each one is. `pack` then fills chunks up to the token budget:
whole pieces when they fit, small neighbours merged, a new chunk at a strong boundary once the
current one is half full; only a piece larger than the budget is split, on sentence (prose) or line
(code) boundaries, with `overlap` tokens repeated so a cut clause keeps its context. Token counts
come from one tokenizer pass over the document (token start offsets), so counting a span is a
binary search; `gdn2_ingest.chunking.chunk_document` verifies every final chunk exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# strength of the boundary before a piece
FLOW, PARAGRAPH, SECTION = 0, 1, 2


@dataclass
class Piece:
    start: int
    end: int
    section: str = ""
    level: int = PARAGRAPH
    prose: bool = True  # split long prose on sentences, long code on lines


@dataclass
class Span:
    """A chunk before it gets ids and line numbers: an exact [start, end) slice of the document."""

    start: int
    end: int
    section: str


class TokenIndex:
    """Token counts of arbitrary char spans of one text, from its token start offsets."""

    def __init__(self, offsets: np.ndarray) -> None:
        self.off = offsets

    def count(self, start: int, end: int) -> int:
        return int(np.searchsorted(self.off, end, "left") - np.searchsorted(self.off, start, "left"))

    def cut_at(self, start: int, n_tokens: int) -> int:
        """Char offset where the span starting at `start` reaches `n_tokens` tokens."""
        i = int(np.searchsorted(self.off, start, "left")) + n_tokens
        return int(self.off[i]) if i < len(self.off) else -1


_SENT = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+|\n\s*\n|\n(?=\s*(?:\(\w{1,4}\)|[-*\u2022]|\d+[.)])\s)")
_LINE = re.compile(r"\n")


def boundaries(text: str, start: int, end: int, prose: bool) -> list[int]:
    """Candidate cut points strictly inside (start, end): sentence ends for prose, line ends for code."""
    rx = _SENT if prose else _LINE
    cuts = [m.end() for m in rx.finditer(text, start, end)]
    if prose:
        # lines are a fallback where sentences run long (lists, tables, man pages)
        cuts += [m.end() for m in _LINE.finditer(text, start, end)]
        cuts = sorted(set(cuts))
    return [c for c in cuts if start < c < end]


def _split_piece(text: str, p: Piece, tix: TokenIndex, budget: int, overlap: int) -> list[Span]:
    """Split one over-budget piece into spans <= budget tokens, cutting at the latest boundary that fits."""
    cuts = boundaries(text, p.start, p.end, p.prose)
    spans: list[Span] = []
    s = p.start
    while s < p.end:
        if tix.count(s, p.end) <= budget:
            spans.append(Span(s, p.end, p.section))
            break
        limit = tix.cut_at(s, budget)
        fit = [c for c in cuts if s < c <= limit]
        e = fit[-1] if fit else limit
        if e <= s:
            e = p.end
        # prefer a cut at whitespace when forced to cut inside a sentence
        if not fit:
            ws = text.rfind(" ", s, e)
            e = ws + 1 if ws > s + (e - s) // 2 else e
        spans.append(Span(s, e, p.section))
        if e >= p.end:
            break
        # step back over whole sentences worth <= overlap tokens, never back to s
        nxt = e
        if overlap > 0:
            back = [c for c in cuts if s < c < e and tix.count(c, e) <= overlap]
            if back:
                nxt = back[0]
        s = nxt
    return spans


def pack(text: str, pieces: list[Piece], tix: TokenIndex, budget: int, overlap: int) -> list[Span]:
    """Greedy fill of chunks with whole pieces (see module docstring)."""
    out: list[Span] = []
    cur: list[Piece] = []
    cur_tok = 0

    def flush() -> None:
        nonlocal cur, cur_tok
        if cur:
            # every clause/section/symbol in the chunk is named, so a citation never names the wrong one
            secs = list(dict.fromkeys(p.section for p in cur if p.section))
            out.append(Span(cur[0].start, cur[-1].end, " | ".join(secs[:4])))
        cur, cur_tok = [], 0

    for p in pieces:
        n = tix.count(p.start, p.end)
        if n == 0 and not text[p.start : p.end].strip():
            continue
        if n > budget:
            if cur and cur_tok <= budget // 4:
                # a heading (or short lead-in) opens the long piece instead of standing alone
                p = Piece(cur[0].start, p.end, cur[0].section or p.section, p.level, p.prose)
                cur, cur_tok = [], 0
            flush()
            out.extend(_split_piece(text, p, tix, budget, overlap))
            continue
        strong_break = p.level >= SECTION and cur_tok >= budget // 2
        if cur and (cur_tok + n > budget or strong_break):
            flush()
        cur.append(p)
        cur_tok += n
    flush()
    return out


def paragraphs(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Blank-line separated blocks of text[start:end] as (start, end) spans."""
    end = len(text) if end is None else end
    out, s = [], start
    # a blank line, or a markdown heading line (rendered man pages have no blank line before one)
    for m in re.finditer(r"\n[ \t]*\n\s*|\n(?=#{1,6} )", text[start:end]):
        e = start + m.start()
        if text[s:e].strip():
            out.append((s, e))
        s = start + m.end()
    if text[s:end].strip():
        out.append((s, end))
    return out
