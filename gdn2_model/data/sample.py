"""One training or evaluation example for the extractive reader, and how contexts are assembled."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gdn2_model.prompt import ContextPiece

# the reader's tokenizer averages ~3.9 characters per token on this corpus; used only to size contexts
CHARS_PER_TOKEN = 3.9


@dataclass(frozen=True)
class AnswerSpan:
    """An answer as it occurs verbatim: `pieces[piece].text[char_start:char_end] == text`."""

    piece: int
    char_start: int
    char_end: int
    text: str


@dataclass
class Sample:
    """A question, its context pieces (evidence among distractors) and every gold answer span."""

    question: str
    pieces: list[ContextPiece]
    answers: list[AnswerSpan]
    task: str
    domain: str
    doc_id: str
    meta: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise ValueError unless every answer occurs verbatim at its stated span."""
        if not self.answers:
            raise ValueError("sample has no answer")
        for a in self.answers:
            got = self.pieces[a.piece].text[a.char_start : a.char_end]
            if got != a.text:
                raise ValueError(f"answer {a.text!r} not at its span (found {got!r})")


def chunk_text(text: str, target_chars: int = 1200) -> list[tuple[int, int]]:
    """Split text at blank lines (then lines) into (start, end) spans of roughly `target_chars`."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(n, start + target_chars)
        if end < n:
            cut = text.rfind("\n\n", start + target_chars // 3, end)
            if cut < 0:
                cut = text.rfind("\n", start + target_chars // 3, end)
            end = cut + 1 if cut >= 0 else end
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    return spans


def assemble_context(
    rng: random.Random,
    evidence: ContextPiece,
    distractors: Sequence[ContextPiece],
    target_tokens: int,
) -> tuple[list[ContextPiece], int]:
    """Put `evidence` at a random rank among distractors filling ~target_tokens; returns (pieces, index)."""
    budget = target_tokens * CHARS_PER_TOKEN - len(evidence.text) - 64
    chosen: list[ContextPiece] = []
    for d in distractors:
        if budget <= 0:
            break
        chosen.append(d)
        budget -= len(d.text) + len(d.header) + 8
    pos = rng.randint(0, len(chosen))
    chosen.insert(pos, evidence)
    return chosen, pos
