"""Context assembly: fill the reader's token budget with the best chunks, laid out for a recurrent reader.

Steps of `assemble_context`:
1. reserve tokens for the question (twice when it is repeated after the context) and the framing;
2. walk the ranked chunks best first and take each one that still fits the budget (a large chunk that
   does not fit is skipped, smaller ones after it may still fit);
3. group the taken chunks by document, sort each group by position and merge chunks that touch
   (line spans within `merge_gap_lines`) into one piece, trimming the overlap of overlapping windows;
4. order pieces by document (the document of the best chunk first) and by position inside it, and give
   each a one-line header (path, section or symbol, lines, page) that the reader and citations point back to;
5. count the pieces (headers exactly, chunk text by the counts of step 2, an upper bound) and, while
   the whole context is over budget (headers cost more than estimated), drop the worst-ranked chunks
   worth the overshoot and lay out again.

Each piece remembers its segments (which chunk sits at which offset of the piece text), so an answer
span inside a piece maps back to the exact file lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gdn2_rag.tokens import TokenCounter

QUESTION_PREFIX = "Question: "
CONTEXT_HEADER = "Context:"
QUESTION_AGAIN_PREFIX = "Question (again): "
ANSWER_PROMPT = "Answer:"
SEGMENT_SEPARATOR = "\n"
PIECE_SEPARATOR = "\n\n"
# a header costs about this much while chunks are picked; pieces are then counted exactly (step 5)
HEADER_ESTIMATE = 24
# per piece in the reader's layout: <|doc|> header <|sep|>
PIECE_MARKERS = 2
COUNT_BLOCK = 128
MIN_CHUNK_TOKENS = 16


@dataclass(frozen=True)
class Segment:
    """Where one source chunk's text sits inside a piece's text."""

    chunk_id: int
    offset: int  # start of this chunk's text in piece.text
    length: int
    line_start: int  # file line of piece.text[offset]
    line_end: int
    page: int | None = None
    trimmed: bool = False  # the overlap with the previous chunk was cut off


@dataclass
class Piece:
    """A run of adjacent chunks of one document, shown to the reader under one header."""

    path: str
    header: str
    text: str
    segments: list[Segment]
    section: str = ""
    domain: str = ""
    title: str = ""
    score: float = 0.0
    tokens: int = 0

    @property
    def line_start(self) -> int:
        return self.segments[0].line_start

    @property
    def line_end(self) -> int:
        return self.segments[-1].line_end

    @property
    def page(self) -> int | None:
        return self.segments[0].page


@dataclass
class AssembledContext:
    """The reader's input: the question and the pieces, plus the accounting behind them."""

    question: str
    pieces: list[Piece]
    tokens: int
    budget: int
    counter: str
    repeat_question: bool = True
    chunk_ids: list[int] = field(default_factory=list)
    skipped_chunks: int = 0

    def to_prompt(self) -> str:
        """The query-first text layout: question, context pieces with headers, question again, answer cue."""
        parts = [f"{QUESTION_PREFIX}{self.question}", CONTEXT_HEADER]
        parts += [f"{p.header}\n{p.text}" for p in self.pieces]
        if self.repeat_question:
            parts.append(f"{QUESTION_AGAIN_PREFIX}{self.question}")
        parts.append(ANSWER_PROMPT)
        return PIECE_SEPARATOR.join(parts)


def make_header(
    number: int, path: str, section: str, line_start: int, line_end: int, page: int | None
) -> str:
    """`[3] docs/policy.md § Refunds · lines 10-42 · p. 4`: short, and enough to cite from."""
    head = f"[{number}] {path}"
    if section:
        head += f" § {section}"
    head += f" · lines {line_start}-{line_end}"
    if page is not None:
        head += f" · p. {page}"
    return head


def _is_verbatim(chunk) -> bool:
    """True when chunk.text is exactly document[char_start:char_end], so overlaps can be trimmed by offset."""
    return len(chunk.text) == chunk.char_end - chunk.char_start


def _touches(prev, nxt, gap: int) -> bool:
    if prev.page != nxt.page:
        return False
    return nxt.line_start <= prev.line_end + gap


def _merge_group(chunks: list, gap: int) -> list[list]:
    """Split position-sorted chunks of one document into runs of touching chunks."""
    runs: list[list] = []
    for chunk in chunks:
        if runs and _touches(runs[-1][-1], chunk, gap):
            runs[-1].append(chunk)
        else:
            runs.append([chunk])
    return runs


def _build_piece(run: list, score: float) -> Piece:
    text_parts: list[str] = []
    segments: list[Segment] = []
    offset = 0
    prev = None
    for chunk in run:
        text, line_start = chunk.text, chunk.line_start
        if (
            prev is not None
            and _is_verbatim(prev)
            and _is_verbatim(chunk)
            and chunk.char_start < prev.char_end
        ):
            cut = prev.char_end - chunk.char_start
            if cut >= len(text):
                # wholly inside the previous chunk: nothing new to show
                continue
            line_start = chunk.line_start + text[:cut].count("\n")
            text = text[cut:]
            # the overlap boundary fell at a line end: the new text starts on the next line
            if text.startswith("\n"):
                text, line_start = text[1:], line_start + 1
        if prev is not None:
            text_parts.append(SEGMENT_SEPARATOR)
            offset += len(SEGMENT_SEPARATOR)
        segments.append(
            Segment(
                chunk_id=int(chunk.id),
                offset=offset,
                length=len(text),
                line_start=line_start,
                line_end=max(line_start, chunk.line_end),
                page=chunk.page,
                trimmed=len(text) != len(chunk.text),
            )
        )
        text_parts.append(text)
        offset += len(text)
        prev = chunk
    first = run[0]
    return Piece(
        path=str(first.path),
        header="",
        text="".join(text_parts),
        segments=segments,
        section=first.section or "",
        domain=first.domain or "",
        title=first.title or "",
        score=score,
    )


def _layout(chosen: list, scores: dict[int, float], gap: int) -> list[Piece]:
    by_doc: dict[tuple[str, str], list] = {}
    for chunk in chosen:
        # one file may hold several documents (an mbox, a JSONL export): `sub` tells them apart
        by_doc.setdefault((str(chunk.path), getattr(chunk, "sub", "")), []).append(chunk)
    pieces: list[Piece] = []
    # documents in the order their best chunk was ranked (dicts keep insertion order)
    for chunks in by_doc.values():
        chunks.sort(key=lambda c: (c.page or 0, c.line_start, c.char_start))
        for run in _merge_group(chunks, gap):
            pieces.append(_build_piece(run, max(scores[c.id] for c in run)))
    for number, piece in enumerate(pieces, start=1):
        piece.header = make_header(
            number, piece.path, piece.section, piece.line_start, piece.line_end, piece.page
        )
    return pieces


def _chunk_counts(chunks: list, counter: TokenCounter, cache: dict | None) -> list[int]:
    if cache is None:
        return counter.count_many([c.text for c in chunks])
    keys = [(counter.name, getattr(c, "content_hash", None) or c.text) for c in chunks]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    for i, n in zip(missing, counter.count_many([chunks[i].text for i in missing]), strict=True):
        cache[keys[i]] = n
    return [cache[k] for k in keys]


def _count_pieces(pieces: list[Piece], cost_of: dict[int, int], counter: TokenCounter) -> None:
    """Set each piece's token count without re-tokenising its text.

    Untrimmed segments reuse their chunk's count; only overlap-trimmed segments and the headers are
    counted. One extra token per segment (the joining newline; BPE never merges across it) and
    PIECE_MARKERS per piece (the reader's document and separator markers) keep the sum an upper bound.
    """
    trimmed = [(p, s) for p in pieces for s in p.segments if s.trimmed]
    trimmed_counts = counter.count_many([p.text[s.offset : s.offset + s.length] for p, s in trimmed])
    count_of = {(id(p), s.offset): n for (p, s), n in zip(trimmed, trimmed_counts, strict=True)}
    headers = counter.count_many([p.header for p in pieces])
    for piece, header_tokens in zip(pieces, headers, strict=True):
        body = sum(
            count_of[(id(piece), s.offset)] if s.trimmed else cost_of[s.chunk_id] for s in piece.segments
        )
        piece.tokens = header_tokens + PIECE_MARKERS + body + len(piece.segments)


def _frame_tokens(question: str, counter: TokenCounter, repeat: bool) -> int:
    frame = f"{QUESTION_PREFIX}{question}{PIECE_SEPARATOR}{CONTEXT_HEADER}{PIECE_SEPARATOR}{ANSWER_PROMPT}"
    if repeat:
        frame += f"{PIECE_SEPARATOR}{QUESTION_AGAIN_PREFIX}{question}"
    return counter.count(frame)


def assemble_context(
    question: str,
    chunks: list,
    scores: dict[int, float],
    budget: int,
    counter: TokenCounter,
    *,
    repeat_question: bool = True,
    merge_gap_lines: int = 1,
    count_cache: dict | None = None,
) -> AssembledContext:
    """Pack ranked `chunks` (best first) into at most `budget` reader tokens (see the module docstring).

    Args:
        question: the user's question, laid out before (and optionally after) the context.
        chunks: ingest `Chunk`s, best first.
        scores: fused score per chunk id (a piece's score is its best chunk's).
        budget: reader tokens for the whole prompt, question and headers included.
        counter: the reader's token counter (exact) or the estimate.
        count_cache: chunk token counts kept across calls, keyed by (counter name, content hash); a
            long-lived `RAG` passes one so hot chunks are tokenised once.
    Returns:
        AssembledContext whose `tokens` <= budget.
    """
    frame = _frame_tokens(question, counter, repeat_question)
    if frame >= budget:
        raise ValueError(f"the question alone takes {frame} tokens, over the context budget of {budget}")
    room = budget - frame
    chosen: list = []
    cost_of: dict[int, int] = {}
    used = 0
    # count in blocks, best first, and stop once the budget is full: at 100k tokens the tokenizer is
    # the main cost of assembly
    for start in range(0, len(chunks), COUNT_BLOCK):
        block = chunks[start : start + COUNT_BLOCK]
        for chunk, tokens in zip(block, _chunk_counts(block, counter, count_cache), strict=True):
            cost = tokens + HEADER_ESTIMATE
            if used + cost <= room:
                chosen.append(chunk)
                cost_of[int(chunk.id)] = tokens
                used += cost
        if room - used < MIN_CHUNK_TOKENS:
            break
    skipped = len(chunks) - len(chosen)
    while True:
        pieces = _layout(chosen, scores, merge_gap_lines)
        _count_pieces(pieces, cost_of, counter)
        total = frame + sum(p.tokens for p in pieces)
        if total <= budget or not chosen:
            break
        # drop worst-ranked chunks worth at least the overshoot, then lay out again (usually once)
        over = total - budget
        while chosen and over > 0:
            over -= cost_of[int(chosen.pop().id)]
            skipped += 1
    return AssembledContext(
        question=question,
        pieces=pieces,
        tokens=total,
        budget=budget,
        counter=counter.name,
        repeat_question=repeat_question,
        chunk_ids=[int(c.id) for c in chosen],
        skipped_chunks=skipped,
    )
