"""Counting reader tokens, so the context fills the reader's budget without overflowing it.

With a reader checkpoint the count is exact: its own tokenizer (`tokenizers.Tokenizer`). Without one
(retrieval-only mode) we use a documented estimate: one token per 4 UTF-8 bytes, but never fewer than
the number of words and punctuation marks. Byte-level BPE vocabularies trained on English prose and
code average 3.5-4.5 bytes per token; the word floor covers short-word text (code, tables), where BPE
can't merge across words.
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
