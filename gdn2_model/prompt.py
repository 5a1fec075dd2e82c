"""The reader's query-first prompt layout and the map from tokens back to characters.

A recurrent reader keeps a fixed-size state, so it must know what to look for *before* it reads:

    <|bos|> <|question|> question <|context|>
        <|doc|> header <|sep|> piece 0 text
        <|doc|> header <|sep|> piece 1 text ...
    [<|question|> question]  (optional "read twice" repeat)  <|answer|>

This module is the one owner of that layout: `build_reader_input` lays it out and `ReaderLayout` says
what it costs in tokens (the frame for a question, one piece), from the same definitions (`frame_parts`,
`PIECE_PARTS`), so a context budget counted with a `ReaderLayout` is the reader's real input length.

The question after the context is off by default: the shipped checkpoint (checkpoints/default) was
trained on `build_reader_input` without it (gdn2_model/training_data.py), so a reader sees the repeat only
when asked. For the extractive heads the repeat changes little: the model is causal, so the start/end
logits of context tokens cannot see what comes after the context (only the shifted end score of the last
context token reads the next token); it is what a generating reader (LM head) reads before answering.

Every token of a piece's text carries `(piece index, char start, char end)` into that piece's
text, so an answer found as a token span becomes an exact character span for citations. Header,
question and marker tokens carry piece index -1 and can never be part of an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tokenizers import Tokenizer

from gdn2_model.token_cache import TextTokens, TokenCache, encode_texts
from gdn2_model.tokenizer import ANSWER, BOS, CONTEXT, DOC, QUESTION, SEP, special_id

# placeholders in the layout's parts below: where the question's, a header's and a piece's own tokens go;
# every other part is one special token
QUESTION_TEXT, HEADER_TEXT, PIECE_TEXT = "{question}", "{header}", "{text}"
LAYOUTS = ("query_first", "question_last")
# one piece: <|doc|> header <|sep|> text
PIECE_PARTS: tuple[str, ...] = (DOC, HEADER_TEXT, SEP, PIECE_TEXT)


def frame_parts(
    repeat_question: bool = False, layout: str = "query_first"
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The frame around the pieces: (head, tail) as special tokens and QUESTION_TEXT.

    query_first: <|bos|> <|question|> q <|context|> ... [<|question|> q] <|answer|>;
    question_last (RULER's order): <|bos|> <|context|> ... <|question|> q <|answer|>.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'query_first' or 'question_last', got {layout!r}")
    question = (QUESTION, QUESTION_TEXT)
    head = (BOS, *question, CONTEXT) if layout == "query_first" else (BOS, CONTEXT)
    tail = (*(question if repeat_question or layout == "question_last" else ()), ANSWER)
    return head, tail


def _expand(parts: Sequence[str], sid: dict[str, int], texts: dict[str, list[int]]) -> list[int]:
    """Token ids of layout parts: a special token's id, or the ids of the text a placeholder stands for."""
    out: list[int] = []
    for part in parts:
        if part in texts:
            out += texts[part]
        else:
            out.append(sid[part])
    return out


@dataclass(frozen=True)
class ContextPiece:
    """One retrieved passage: `text` is what the reader may quote; `header` (path, section) goes before it.

    The reader reads `header` and `text` only; path, lines, section and page say where the text comes
    from (for callers mapping spans back to files; None / "" when unknown). Field names are stable:
    pieces travel as `dataclasses.asdict` dicts (bench/rag/natural/reader_replay.py).
    """

    text: str
    header: str = ""
    path: str = ""
    line_start: int | None = None
    line_end: int | None = None
    section: str = ""
    page: int | None = None


@dataclass
class ReaderInput:
    """Token ids of one prompt and, per token, where it came from.

    piece_index[t] is the piece a token belongs to (-1: question, header or marker); char_start/char_end
    are offsets into that piece's text. `pieces_used` < len(pieces) means the budget cut the tail off.
    """

    input_ids: np.ndarray  # [T] int64
    piece_index: np.ndarray  # [T] int32
    char_start: np.ndarray  # [T] int32
    char_end: np.ndarray  # [T] int32
    pieces_used: int
    question_tokens: int
    question_match: np.ndarray | None = None  # [T] int64: 1 where a token outside the question occurs in it
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def answer_mask(self) -> np.ndarray:
        """True where a token may start or end an answer (text of a piece)."""
        return self.piece_index >= 0

    def token_span(self, piece: int, char_start: int, char_end: int) -> tuple[int, int] | None:
        """Inclusive token span covering chars [char_start, char_end) of `piece`; None if cut off or empty."""
        sel = np.nonzero(
            (self.piece_index == piece) & (self.char_end > char_start) & (self.char_start < char_end)
        )[0]
        if sel.size == 0:
            return None
        return int(sel[0]), int(sel[-1])

    def char_span(self, start_tok: int, end_tok: int) -> tuple[int, int, int]:
        """(piece, char start, char end) of tokens start_tok..end_tok, which must lie in one piece."""
        p = int(self.piece_index[start_tok])
        if p < 0 or int(self.piece_index[end_tok]) != p or end_tok < start_tok:
            raise ValueError(f"tokens {start_tok}..{end_tok} are not one span of one piece")
        return p, int(self.char_start[start_tok]), int(self.char_end[end_tok])


def build_reader_input(
    tokenizer: Tokenizer,
    question: str,
    pieces: Sequence[ContextPiece],
    *,
    max_tokens: int | None = None,
    repeat_question: bool = False,
    layout: str = "query_first",
    cache: TokenCache | None = None,
) -> ReaderInput:
    """Lay out question and pieces as token ids with the token -> (piece, char span) map.

    Args:
        tokenizer: the reader's tokenizer (with SPECIAL_TOKENS).
        question: the user's question; must not be empty.
        pieces: context passages, best first; they are kept whole, and those past `max_tokens` are dropped.
        max_tokens: total budget including question and markers; None for no limit.
        repeat_question: repeat the question after the context ("read twice").
        layout: `query_first` (the reader's) or `question_last` (RULER's: context, then the question).
        cache: token ids of texts seen before (`TokenCache` of the same tokenizer); None tokenises all.
    """
    if not question.strip():
        raise ValueError("question is empty")
    head_parts, tail_parts = frame_parts(repeat_question, layout)
    sid = {t: special_id(tokenizer, t) for t in (BOS, QUESTION, CONTEXT, DOC, SEP, ANSWER)}
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids
    head = _expand(head_parts, sid, {QUESTION_TEXT: q_ids})
    tail = _expand(tail_parts, sid, {QUESTION_TEXT: q_ids})
    if max_tokens is not None and len(head) + len(tail) > max_tokens:
        raise ValueError(
            f"question alone needs {len(head) + len(tail)} tokens, over the budget of {max_tokens}"
        )

    texts = [p.text for p in pieces]
    headers = [p.header for p in pieces]
    encoded: list[TextTokens] = (
        cache.encode_many(texts + headers) if cache else encode_texts(tokenizer, texts + headers)
    )
    enc_text, enc_head = encoded[: len(texts)], encoded[len(texts) :]

    ids: list[np.ndarray] = [np.asarray(head, dtype=np.int64)]
    pidx: list[np.ndarray] = [np.full(len(head), -1, dtype=np.int32)]
    cs: list[np.ndarray] = [np.zeros(len(head), dtype=np.int32)]
    ce: list[np.ndarray] = [np.zeros(len(head), dtype=np.int32)]
    used_tokens = len(head) + len(tail)
    used = 0
    # PIECE_PARTS ends with the text; the parts before it (markers, header) carry piece index -1
    for i, (et, eh) in enumerate(zip(enc_text, enc_head, strict=True)):
        hdr = _expand(PIECE_PARTS[:-1], sid, {HEADER_TEXT: eh.ids.tolist()})
        n = len(hdr) + len(et)
        if max_tokens is not None and used_tokens + n > max_tokens:
            break
        ids += [np.asarray(hdr, dtype=np.int64), et.ids]
        pidx += [np.full(len(hdr), -1, dtype=np.int32), np.full(len(et), i, dtype=np.int32)]
        cs += [np.zeros(len(hdr), dtype=np.int32), et.offsets[:, 0]]
        ce += [np.zeros(len(hdr), dtype=np.int32), et.offsets[:, 1]]
        used_tokens += n
        used += 1
    ids.append(np.asarray(tail, dtype=np.int64))
    for arr in (pidx, cs, ce):
        arr.append(np.full(len(tail), -1 if arr is pidx else 0, dtype=np.int32))
    input_ids = np.concatenate(ids, dtype=np.int64)
    # DrQA's exact-match feature: context and header tokens that also occur in the question
    match = np.isin(input_ids, np.asarray(q_ids, dtype=np.int64)).astype(np.int64)
    match[: len(head)] = 0
    match[len(input_ids) - len(tail) :] = 0
    return ReaderInput(
        input_ids=input_ids,
        piece_index=np.concatenate(pidx),
        char_start=np.concatenate(cs),
        char_end=np.concatenate(ce),
        pieces_used=used,
        question_tokens=len(q_ids),
        question_match=match,
    )


class ReaderLayout:
    """What the layout of `build_reader_input` costs in tokens, counted with the reader's tokenizer.

    Exact by construction: the frame and a piece are counted from `frame_parts` / `PIECE_PARTS`, the
    definitions `build_reader_input` lays out, and texts are tokenised as it tokenises them (each header
    and each piece text on its own, without special tokens). So, for pieces that all fit,

        len(build_reader_input(tok, q, pieces, repeat_question=r)) ==
            layout.frame_tokens(q) + sum(layout.piece_tokens(p.header, p.text) for p in pieces)

    It is also a token counter (`name`, `count`, `count_many`) for bare texts. With a `cache` (the reader's
    `TokenCache`) the texts it counts are kept tokenised, so laying the same texts out later costs no
    tokenising.
    """

    name = "reader-tokenizer"

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        repeat_question: bool = False,
        layout: str = "query_first",
        cache: TokenCache | None = None,
    ):
        self.tokenizer = tokenizer
        self.cache = cache
        self.repeat_question = repeat_question
        self.order = layout
        head, tail = frame_parts(repeat_question, layout)
        frame = head + tail
        # special tokens of the frame and of one piece, and how often the question is laid out
        self.frame_markers = sum(part != QUESTION_TEXT for part in frame)
        self.question_copies = frame.count(QUESTION_TEXT)
        self.piece_markers = sum(part not in (HEADER_TEXT, PIECE_TEXT) for part in PIECE_PARTS)

    def count(self, text: str) -> int:
        """Tokens of one bare text (no special tokens)."""
        return self.count_many([text])[0]

    def count_many(self, texts: list[str]) -> list[int]:
        """Tokens of bare texts, in one batch call (the Rust tokenizer runs it on all cores)."""
        if not texts:
            return []
        if self.cache is not None:
            return [len(t) for t in self.cache.encode_many(texts)]
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def count_headers(self, headers: list[str]) -> list[int]:
        """Tokens of piece headers (laid out whole)."""
        return self.count_many(headers)

    def frame_tokens(self, question: str) -> int:
        """Tokens of everything but the pieces: markers and the question (twice when it is repeated)."""
        return self.frame_markers + self.question_copies * self.count(question)

    def piece_tokens(self, header: str, text: str) -> int:
        """Tokens of one piece: its markers, header and text."""
        return self.piece_markers + sum(self.count_many([header, text]))

    def build(
        self, question: str, pieces: Sequence[ContextPiece], max_tokens: int | None = None
    ) -> ReaderInput:
        """`build_reader_input` with this layout's tokenizer and settings."""
        return build_reader_input(
            self.tokenizer,
            question,
            pieces,
            max_tokens=max_tokens,
            repeat_question=self.repeat_question,
            layout=self.order,
            cache=self.cache,
        )


def align_end_logits(end_logits: torch.Tensor) -> torch.Tensor:
    """Per-token end scores from a reader trained with `reader_end_shift`: token t's score is read at t + 1.

    A causal reader cannot see past token t, so "the answer ends here" is ambiguous until the next token
    arrives (does the number go on? does the clause?). With the shift the end head reads one token further;
    the last position, which is never an answer token, gets -inf.
    """
    pad = torch.full_like(end_logits[..., :1], float("-inf"))
    return torch.cat([end_logits[..., 1:], pad], dim=-1)


def align_end_logits_packed(end_logits: torch.Tensor, cu: Sequence[int]) -> torch.Tensor:
    """`align_end_logits` of each sequence packed on one axis [Ttot] at offsets `cu` [N+1]."""
    out = torch.cat([end_logits[1:], torch.full_like(end_logits[:1], float("-inf"))])
    last = torch.tensor([e - 1 for s, e in zip(cu[:-1], cu[1:], strict=True) if e > s], dtype=torch.long)
    out[last.to(out.device)] = float("-inf")
    return out
