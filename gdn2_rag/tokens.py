"""Counting reader tokens, so the context fills the reader's budget without overflowing it.

The reader's prompt layout and its cost belong to gdn2_model (`gdn2_model.prompt.ReaderLayout`); context
assembly asks a `LayoutCost` for the frame's and each piece's tokens. With a reader loaded that is the
reader's own layout and tokenizer, and the budget is exact. Without one (retrieval-only, the default:
no reader reads the context) it is `EstimateLayout`, a documented estimate: one token per 4 UTF-8 bytes,
but never fewer than the number of words and punctuation marks, plus the layout's marker tokens. Byte-level
BPE vocabularies trained on English prose and code average 3.5-4.5 bytes per token; the word floor covers
short-word text (code, tables), where BPE can't merge across words.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

_PIECES = re.compile(r"\w+|[^\w\s]")
BYTES_PER_TOKEN = 4.0


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...


class LayoutCost(Protocol):
    """What context assembly asks of the reader's prompt layout (gdn2_model.prompt.ReaderLayout).

    frame_tokens(question): the question (twice when `repeat_question`) and the frame's markers;
    piece_markers: a piece's markers, on top of the tokens of its header and its text;
    count / count_many: tokens of bare texts; count_headers: tokens of piece headers as laid out (a
    layout may keep only a header's first tokens).
    """

    name: str
    repeat_question: bool
    piece_markers: int

    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...

    def count_headers(self, headers: list[str]) -> list[int]: ...

    def frame_tokens(self, question: str) -> int: ...

    def piece_tokens(self, header: str, text: str) -> int: ...


class EstimateCounter:
    """The byte/word estimate described in the module docstring."""

    name = "estimate(bytes/4, >= words)"

    def count(self, text: str) -> int:
        if not text:
            return 0
        by_bytes = math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
        return max(by_bytes, len(_PIECES.findall(text)))

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


class TokenizerCounter:
    """Exact count with a `tokenizers.Tokenizer` (no special tokens: the prompt adds its own)."""

    def __init__(self, tokenizer, name: str = "reader-tokenizer") -> None:
        self.tokenizer = tokenizer
        self.name = name

    def count(self, text: str) -> int:
        if not text:
            return 0
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return len(enc.ids if hasattr(enc, "ids") else enc)

    def count_many(self, texts: list[str]) -> list[int]:
        """Counts of many texts in one batch call (the Rust tokenizer runs it on all cores)."""
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


class EstimateLayout:
    """The reader's layout estimated without the reader: texts by `counter`, markers as the model lays them.

    Used when no reader is loaded: nothing then reads the layout, and importing the model package to
    count it (torch, seconds) would slow every retrieval-only answer. The marker counts are those of
    gdn2_model.prompt (`frame_parts`, `PIECE_PARTS`); tests/rag/test_rag_assemble.py checks that they
    agree with `ReaderLayout`. `counter` defaults to the byte/word estimate; a reader tokenizer's
    `TokenizerCounter` makes the text counts exact.
    """

    # <|bos|> <|question|> <|context|> ... <|answer|>, and <|question|> again when the question is repeated
    FRAME_MARKERS = 4
    # <|doc|> header <|sep|> text
    PIECE_MARKERS = 2

    def __init__(self, counter: TokenCounter | None = None, *, repeat_question: bool = False) -> None:
        self.counter = counter if counter is not None else EstimateCounter()
        self.name = self.counter.name
        self.repeat_question = repeat_question
        self.piece_markers = self.PIECE_MARKERS

    def count(self, text: str) -> int:
        return self.counter.count(text)

    def count_many(self, texts: list[str]) -> list[int]:
        return self.counter.count_many(texts)

    def count_headers(self, headers: list[str]) -> list[int]:
        return self.count_many(headers)

    def frame_tokens(self, question: str) -> int:
        copies = 2 if self.repeat_question else 1
        return self.FRAME_MARKERS + (copies - 1) + copies * self.count(question)

    def piece_tokens(self, header: str, text: str) -> int:
        return self.piece_markers + sum(self.count_many([header, text]))
