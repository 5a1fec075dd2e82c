"""The reader's query-first prompt layout and the map from tokens back to characters.

A recurrent reader keeps a fixed-size state, so it must know what to look for *before* it reads:

    <|bos|> <|question|> question <|context|>
        <|doc|> header <|sep|> piece 0 text
        <|doc|> header <|sep|> piece 1 text ...
    [<|question|> question]  (optional "read twice" repeat)  <|answer|>

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

from gdn2_model.tokenizer import ANSWER, BOS, CONTEXT, DOC, QUESTION, SEP, special_id


@dataclass(frozen=True)
class ContextPiece:
    """One retrieved passage: `text` is what the reader may quote; `header` (path, section) goes before it."""

    text: str
    header: str = ""


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
) -> ReaderInput:
    """Lay out question and pieces as token ids with the token -> (piece, char span) map.

    Args:
        tokenizer: the reader's tokenizer (with SPECIAL_TOKENS).
        question: the user's question; must not be empty.
        pieces: context passages, best first; they are kept whole, and those past `max_tokens` are dropped.
        max_tokens: total budget including question and markers; None for no limit.
        repeat_question: repeat the question after the context ("read twice").
        layout: `query_first` (the reader's) or `question_last` (RULER's: context, then the question).
    """
    if not question.strip():
        raise ValueError("question is empty")
    if layout not in ("query_first", "question_last"):
        raise ValueError(f"layout must be 'query_first' or 'question_last', got {layout!r}")
    sid = {t: special_id(tokenizer, t) for t in (BOS, QUESTION, CONTEXT, DOC, SEP, ANSWER)}
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids
    q_block = [sid[QUESTION], *q_ids]
    head = [sid[BOS], *q_block, sid[CONTEXT]] if layout == "query_first" else [sid[BOS], sid[CONTEXT]]
    tail = (q_block if (repeat_question or layout == "question_last") else []) + [sid[ANSWER]]
    if max_tokens is not None and len(head) + len(tail) > max_tokens:
        raise ValueError(
            f"question alone needs {len(head) + len(tail)} tokens, over the budget of {max_tokens}"
        )

    texts = [p.text for p in pieces]
    headers = [p.header for p in pieces]
    enc_text = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
    enc_head = tokenizer.encode_batch(headers, add_special_tokens=False) if headers else []

    ids: list[np.ndarray] = [np.asarray(head, dtype=np.int64)]
    pidx: list[np.ndarray] = [np.full(len(head), -1, dtype=np.int32)]
    cs: list[np.ndarray] = [np.zeros(len(head), dtype=np.int32)]
    ce: list[np.ndarray] = [np.zeros(len(head), dtype=np.int32)]
    used_tokens = len(head) + len(tail)
    used = 0
    for i, (et, eh) in enumerate(zip(enc_text, enc_head, strict=True)):
        hdr = [sid[DOC], *eh.ids, sid[SEP]]
        n = len(hdr) + len(et.ids)
        if max_tokens is not None and used_tokens + n > max_tokens:
            break
        off = np.asarray(et.offsets, dtype=np.int32).reshape(-1, 2)
        ids += [np.asarray(hdr, dtype=np.int64), np.asarray(et.ids, dtype=np.int64)]
        pidx += [np.full(len(hdr), -1, dtype=np.int32), np.full(len(et.ids), i, dtype=np.int32)]
        cs += [np.zeros(len(hdr), dtype=np.int32), off[:, 0]]
        ce += [np.zeros(len(hdr), dtype=np.int32), off[:, 1]]
        used_tokens += n
        used += 1
    ids.append(np.asarray(tail, dtype=np.int64))
    for arr in (pidx, cs, ce):
        arr.append(np.full(len(tail), -1 if arr is pidx else 0, dtype=np.int32))
    input_ids = np.concatenate(ids)
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


def align_end_logits(end_logits: torch.Tensor) -> torch.Tensor:
    """Per-token end scores from a reader trained with `reader_end_shift`: token t's score is read at t + 1.

    A causal reader cannot see past token t, so "the answer ends here" is ambiguous until the next token
    arrives (does the number go on? does the clause?). With the shift the end head reads one token further;
    the last position, which is never an answer token, gets -inf.
    """
    pad = torch.full_like(end_logits[..., :1], float("-inf"))
    return torch.cat([end_logits[..., 1:], pad], dim=-1)
