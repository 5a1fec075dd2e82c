"""Citations: map an answer span in the assembled context back to file lines, and check it is really there.

A span (piece, char_start, char_end) may cross the chunks merged into a piece; it yields one citation
per chunk segment it touches. Each citation is verified by re-reading the source file: the quoted text
(whitespace-normalised) must occur in the file's lines `line_start..line_end`. Files whose bytes are
not the indexed text (PDF, DOCX, HTML, e-mail, compressed man pages) are verified against the indexed
chunk text instead, and say so (`verified_against="index"`). Man pages (`foo.1.gz`, or a plain
`man/man1/foo.1`: whatever ingest read as a man page) are always verified that way: groff renders
them, and their line numbers are lines of the rendered text, not of the roff source. A span that cannot
be verified is never cited at those lines: we fall back to the whole chunk's line range when the quote
is there, and drop the citation otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gdn2_ingest.loaders import detect_format
from gdn2_ingest.loaders.base import SkipFile, decode_text
from gdn2_rag.assemble import AssembledContext, Piece, Segment
from gdn2_rag.types import Citation

# formats whose file bytes are not the text we indexed: verify against the index instead
NON_TEXT_SUFFIXES = (
    ".pdf",
    ".docx",
    ".html",
    ".htm",
    ".xhtml",
    ".eml",
    ".mbox",
    ".json",
    ".jsonl",
    ".csv",
    ".gz",
    ".bz2",
    ".xz",
)
_WS = re.compile(r"\s+")


def is_man_page(path: str) -> bool:
    """True for a file ingest reads as a man page (detect_format): its chunks are rendered text,
    with line numbers of that text, so the roff source cannot confirm them."""
    return detect_format(Path(path))[0] == "man"


def normalise(text: str) -> str:
    return _WS.sub(" ", text).strip()


@dataclass
class FileLines:
    """A cache of source files read as lines, for verification during one `ask`."""

    cache: dict[str, list[str] | None] = field(default_factory=dict)

    def lines(self, path: str) -> list[str] | None:
        if path not in self.cache:
            # decode as ingest did (UTF-8, else the detected legacy encoding), so a quote from a
            # latin-1 file is found again in it
            try:
                text = decode_text(Path(path).read_bytes())
            except (OSError, SkipFile):
                self.cache[path] = None
            else:
                # lines end at "\n" only, as ingest counts them (and editors show them): splitlines()
                # would also break at form feeds and other separators, shifting every later line
                lines = text.split("\n")
                if lines and lines[-1] == "":
                    lines.pop()
                self.cache[path] = lines
        return self.cache[path]


def _segment_span(piece: Piece, seg: Segment, start: int, end: int) -> tuple[int, int, str]:
    """Lines and text of the part [start, end) of piece.text that lies in `seg`."""
    lo = max(start, seg.offset)
    hi = min(end, seg.offset + seg.length)
    line_start = seg.line_start + piece.text[seg.offset : lo].count("\n")
    quote = piece.text[lo:hi]
    # a quote ending on a newline does not reach the next line
    line_end = line_start + quote.rstrip("\n").count("\n")
    return line_start, min(max(line_end, line_start), max(seg.line_end, line_start)), quote


def verify(path: str, line_start: int, line_end: int, quote: str, files: FileLines) -> bool:
    """True when `quote` occurs (whitespace-normalised) in lines line_start..line_end of the file."""
    lines = files.lines(path)
    if lines is None or line_start < 1 or line_end > len(lines):
        return False
    window = normalise("\n".join(lines[line_start - 1 : line_end]))
    return normalise(quote) in window


def cite_span(
    context: AssembledContext,
    piece_index: int,
    char_start: int,
    char_end: int,
    chunk_texts: dict[int, str],
    files: FileLines | None = None,
) -> list[Citation]:
    """Citations for the span [char_start, char_end) of context.pieces[piece_index].text.

    `chunk_texts` maps chunk id -> indexed chunk text (to verify non-text formats and as fallback).
    Returns only verified citations, in reading order.
    """
    if not 0 <= piece_index < len(context.pieces):
        raise ValueError(f"piece_index {piece_index} out of range (0..{len(context.pieces) - 1})")
    piece = context.pieces[piece_index]
    if not 0 <= char_start < char_end <= len(piece.text):
        raise ValueError(f"span [{char_start}, {char_end}) outside piece of {len(piece.text)} chars")
    files = files or FileLines()
    out: list[Citation] = []
    for seg in piece.segments:
        if seg.offset + seg.length <= char_start or seg.offset >= char_end:
            continue
        line_start, line_end, quote = _segment_span(piece, seg, char_start, char_end)
        if not normalise(quote):
            continue
        citation = _verified(piece, seg, line_start, line_end, quote, chunk_texts, files)
        if citation is not None:
            out.append(citation)
    return out


def _verified(piece, seg, line_start, line_end, quote, chunk_texts, files) -> Citation | None:
    common = dict(path=piece.path, quote=quote, chunk_id=seg.chunk_id, page=seg.page, section=piece.section)
    if is_man_page(piece.path):
        # lines of groff's rendering: only the indexed text holds them (the roff source never does)
        if normalise(quote) in normalise(chunk_texts.get(seg.chunk_id, "")):
            return Citation(
                line_start=line_start, line_end=line_end, verified=True, verified_against="index", **common
            )
        return None
    if verify(piece.path, line_start, line_end, quote, files):
        return Citation(line_start=line_start, line_end=line_end, verified=True, **common)
    # offsets drifted (e.g. a chunk text that is not a verbatim slice): cite the whole segment if true there
    if verify(piece.path, seg.line_start, seg.line_end, quote, files):
        return Citation(line_start=seg.line_start, line_end=seg.line_end, verified=True, **common)
    # formats whose file bytes are not the indexed text (PDF, HTML, compressed man pages, ...)
    non_text = seg.page is not None or any(piece.path.lower().endswith(s) for s in NON_TEXT_SUFFIXES)
    if non_text and normalise(quote) in normalise(chunk_texts.get(seg.chunk_id, "")):
        return Citation(
            line_start=line_start, line_end=line_end, verified=True, verified_against="index", **common
        )
    return None
