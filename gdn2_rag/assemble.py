"""Context assembly: fill the reader's token budget with the best chunks, laid out for a recurrent reader.

The layout itself (question, markers, pieces) belongs to the reader: gdn2_model.prompt lays it out and
says what it costs. Assembly asks a `LayoutCost` (gdn2_rag.tokens) for the tokens of the frame and of each
piece, so with a reader loaded the budget counts exactly what the reader will read.

Steps of `assemble_context`:
1. reserve the frame's tokens (markers and the question, twice when the layout repeats it);
2. walk the ranked chunks best first and take each one that still fits the budget, at its text's tokens
   plus one for the join when it touches a chunk already taken, else plus a piece's markers and a header
   of its own (a large chunk that does not fit is skipped, smaller ones after it may still fit);
3. group the taken chunks by document, sort each group by position and merge chunks that touch
   (line spans within `merge_gap_lines`) into one piece, trimming the overlap of overlapping windows;
4. order pieces by document (the document of the best chunk first) and by position inside it, and give
   each a one-line header (path, section or symbol, lines, page) that the reader and citations point back to;
5. count each piece as the layout does (markers, header, text; a merged piece's text as a whole) and,
   while the context is over budget, drop the worst-ranked chunks worth the overshoot and lay out again;
6. the prices of step 2 are estimates (merging saves headers): fill the room left with the best chunks
   not taken, keeping the result only when its exact count still fits.

Each piece remembers its segments (which chunk sits at which offset of the piece text), so an answer
span inside a piece maps back to the exact file lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gdn2_rag.tokens import EstimateLayout, LayoutCost, TokenCounter

# joins the chunks of one piece (part of the piece's text, not of the layout around it)
SEGMENT_SEPARATOR = "\n"
COUNT_BLOCK = 128
MIN_CHUNK_TOKENS = 16
# at most this many refills in step 6, each laid out and counted once more
REFILL_ROUNDS = 2


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
    """The reader's input: the question and the pieces, plus the accounting behind them.

    `tokens` is what the layout `counter` (its name) says the whole prompt costs: with the reader's
    own layout, the length of the reader's input; `repeat_question` is the layout's, and the reader
    lays the question out again after the pieces when it is True.
    """

    question: str
    pieces: list[Piece]
    tokens: int
    budget: int
    counter: str
    repeat_question: bool = False
    chunk_ids: list[int] = field(default_factory=list)
    skipped_chunks: int = 0


def make_header(
    number: int, path: str, section: str, line_start: int, line_end: int, page: int | None
) -> str:
    """`[3] docs/policy.md § Refunds · lines 10-42 · p. 4`: short, and enough to cite from.

    The path is shown as gdn2_ingest.scan.display_path writes it: a non-UTF-8 file name's bytes as
    '\\xe9' escapes, so the header can be tokenized and printed (the piece keeps the real path)."""
    from gdn2_ingest.scan import display_path

    head = f"[{number}] {display_path(path)}"
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


def _chunk_keys(chunks: list, layout: LayoutCost) -> list:
    """Cache keys of chunk texts: (layout name, content hash), the text itself when there is no hash."""
    return [(layout.name, getattr(c, "content_hash", None) or c.text) for c in chunks]


def _cached_counts(
    keys: list, texts: list[str], layout: LayoutCost, cache: dict | None, headers: bool = False
) -> list[int]:
    """Token counts of `texts` (piece headers when `headers`), counted once per key when a cache is given."""
    count = layout.count_headers if headers else layout.count_many
    if cache is None:
        return count(texts)
    missing = [i for i, k in enumerate(keys) if k not in cache]
    for i, n in zip(missing, count([texts[i] for i in missing]), strict=True):
        cache[keys[i]] = n
    return [cache[k] for k in keys]


def _count_pieces(
    pieces: list[Piece], chunk_key: dict[int, tuple], cost_of: dict[int, int], layout: LayoutCost, cache
) -> None:
    """Set each piece's tokens to the layout's cost of it: markers + header + text, exactly.

    A piece of one whole chunk has that chunk's text and reuses its count from step 2; a merged piece
    is counted whole, as the reader tokenises it (joins and trimmed overlaps change the tokens). A merged
    text is fixed by its chunks and the length kept of each, which key its count in the cache.
    """
    merged = [p for p in pieces if len(p.segments) > 1 or p.segments[0].trimmed]
    keys = [("piece", *((chunk_key[s.chunk_id], s.length) for s in p.segments)) for p in merged]
    merged_counts = dict(
        zip(map(id, merged), _cached_counts(keys, [p.text for p in merged], layout, cache), strict=True)
    )
    headers = layout.count_headers([p.header for p in pieces])
    for piece, header_tokens in zip(pieces, headers, strict=True):
        text_tokens = merged_counts.get(id(piece))
        if text_tokens is None:
            text_tokens = cost_of[piece.segments[0].chunk_id]
        piece.tokens = layout.piece_markers + header_tokens + text_tokens


def _header_costs(chunks: list, layout: LayoutCost, cache: dict) -> list[int]:
    """Price of each chunk's header and markers, as if it were a piece of its own.

    The header is priced as piece [10]'s (the number is only known after layout), so the count can be
    kept in the cache.
    """
    headers = [
        make_header(10, str(c.path), c.section or "", c.line_start, c.line_end, c.page) for c in chunks
    ]
    keys = [(layout.name, "header", h) for h in headers]
    return [layout.piece_markers + n for n in _cached_counts(keys, headers, layout, cache, headers=True)]


class _Taken:
    """Chunks taken so far, by document, to price the next one: a chunk that touches a taken one joins
    its piece (one more token, the joining newline; a trimmed overlap only saves), any other starts a
    piece of its own (header and markers)."""

    def __init__(self, gap: int, chunks: list = ()) -> None:
        self.gap = gap
        self.by_doc: dict[tuple[str, str], list] = {}
        for chunk in chunks:
            self.add(chunk)

    def add(self, chunk) -> None:
        self.by_doc.setdefault((str(chunk.path), getattr(chunk, "sub", "")), []).append(chunk)

    def price(self, chunk, tokens: int, header: int) -> int:
        for other in self.by_doc.get((str(chunk.path), getattr(chunk, "sub", "")), ()):
            if (
                other.page == chunk.page
                and chunk.line_start <= other.line_end + self.gap
                and other.line_start <= chunk.line_end + self.gap
            ):
                return tokens + 1
        return tokens + header


def assemble_context(
    question: str,
    chunks: list,
    scores: dict[int, float],
    budget: int,
    layout: LayoutCost | TokenCounter,
    *,
    merge_gap_lines: int = 1,
    count_cache: dict | None = None,
) -> AssembledContext:
    """Pack ranked `chunks` (best first) into at most `budget` reader tokens (see the module docstring).

    Args:
        question: the user's question.
        chunks: ingest `Chunk`s, best first.
        scores: fused score per chunk id (a piece's score is its best chunk's).
        budget: reader tokens for the whole prompt, question and headers included.
        layout: the reader's layout costs (`ReaderRuntime.layout()`: exact with a reader loaded, else
            `EstimateLayout`); whether the question is repeated is the layout's. A bare TokenCounter is
            taken as `EstimateLayout(counter)`.
        count_cache: token counts kept across calls, keyed by (layout name, content hash) for chunks and
            by their chunks for merged pieces; a long-lived `RAG` passes one so hot chunks are tokenised once.
    Returns:
        AssembledContext whose `tokens` <= budget: the layout's count of the whole prompt.
    """
    if not hasattr(layout, "frame_tokens"):
        layout = EstimateLayout(layout)
    cache = {} if count_cache is None else count_cache
    frame = layout.frame_tokens(question)
    if frame >= budget:
        raise ValueError(f"the question alone takes {frame} tokens, over the context budget of {budget}")
    room = budget - frame
    chosen: list = []
    taken = _Taken(merge_gap_lines)
    cost_of: dict[int, int] = {}
    header_of: dict[int, int] = {}
    chunk_key: dict[int, tuple] = {}
    seen = 0
    used = 0
    # count in blocks, best first, and stop once the budget is full: at 100k tokens the tokenizer is
    # the main cost of assembly
    for start in range(0, len(chunks), COUNT_BLOCK):
        block = chunks[start : start + COUNT_BLOCK]
        keys = _chunk_keys(block, layout)
        counts = _cached_counts(keys, [c.text for c in block], layout, cache)
        headers = _header_costs(block, layout, cache)
        for chunk, key, tokens, header in zip(block, keys, counts, headers, strict=True):
            cid = int(chunk.id)
            cost_of[cid], header_of[cid], chunk_key[cid] = tokens, header, key
            price = taken.price(chunk, tokens, header)
            if used + price <= room:
                chosen.append(chunk)
                taken.add(chunk)
                used += price
        seen = start + len(block)
        if room - used < MIN_CHUNK_TOKENS:
            break
    rank = {int(c.id): i for i, c in enumerate(chunks[:seen])}

    def lay_out(run: list) -> tuple[list[Piece], int]:
        pieces = _layout(run, scores, merge_gap_lines)
        _count_pieces(pieces, chunk_key, cost_of, layout, cache)
        return pieces, frame + sum(p.tokens for p in pieces)

    while True:
        pieces, total = lay_out(chosen)
        if total <= budget or not chosen:
            break
        # drop worst-ranked chunks worth at least the overshoot, then lay out again (usually once)
        over = total - budget
        while chosen and over > 0:
            over -= cost_of[int(chosen.pop().id)]
    # the prices were estimates: fill what they left over with the best chunks not taken, as long as
    # the exact count still fits
    for _ in range(REFILL_ROUNDS):
        spare = budget - total
        have = {int(c.id) for c in chosen}
        taken = _Taken(merge_gap_lines, chosen)
        extra = []
        for chunk in chunks[:seen]:
            cid = int(chunk.id)
            if cid in have or spare < MIN_CHUNK_TOKENS:
                continue
            price = taken.price(chunk, cost_of[cid], header_of[cid])
            if price <= spare:
                extra.append(chunk)
                taken.add(chunk)
                spare -= price
        if not extra:
            break
        trial = sorted(chosen + extra, key=lambda c: rank[int(c.id)])
        trial_pieces, trial_total = lay_out(trial)
        if trial_total > budget:
            break
        chosen, pieces, total = trial, trial_pieces, trial_total
    skipped = len(chunks) - len(chosen)
    return AssembledContext(
        question=question,
        pieces=pieces,
        tokens=total,
        budget=budget,
        counter=layout.name,
        repeat_question=layout.repeat_question,
        chunk_ids=[int(c.id) for c in chosen],
        skipped_chunks=skipped,
    )
