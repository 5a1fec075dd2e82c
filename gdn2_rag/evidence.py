"""The answer when no reader span is used: the best evidence sentence among the best retrieved passages.

Candidates are the sentences (prose) or lines (code) of the best `EVIDENCE_PASSAGES` retrieved passages
that made it into the context. A candidate c of passage rank r scores, for question q,

    s(c) = cos(E(q), E(c)) + LEXICAL_WEIGHT * lex(q, c) - RANK_PENALTY * r + TYPE_WEIGHT * type(q, c)

- E is the index's own embedder (all-MiniLM-L6-v2 by default). It was trained on question-answer pairs,
  so a question and the sentence that answers it are close even when they share no word: this is what
  a user's paraphrase needs and what rare-word overlap alone missed.
- lex is the rare-word overlap of `extractive.sentence_scores`, scaled to [0, 1] over the candidates: exact
  names (an option, a function, a defined term) still count.
- the rank penalty keeps retrieval's order as the prior.
- type is `answer_type.type_match`: the share of the answer kinds the question's form asks for (a number,
  a date, a default, a name, an exception, a path, an option) that the candidate holds an instance of.
  The bi-encoder ranks the sentence that restates the question's topic first; the answer is often its
  neighbour that holds the asked-for value. On the hand-written dev set (205 answerable questions, 4k
  budget) answer+citation rose from 0.356 to 0.439 at weights 0.3-1.0 (5-fold cross-validated 0.434-0.439;
  bench/results/reader.md); 0.5 sits inside that plateau.

Without an embedder (a custom index, tests) the score is the lexical one alone. `best_cosine` is the
evidence strength the abstention threshold is calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdn2_rag.answer_type import expected_types, type_match
from gdn2_rag.assemble import AssembledContext
from gdn2_rag.extractive import sentence_scores

EVIDENCE_PASSAGES = 5
LEXICAL_WEIGHT = 0.15
RANK_PENALTY = 0.02
TYPE_WEIGHT = 0.5
MAX_EVIDENCE_CHARS = 600
# candidates shorter than this many characters carry too little to be an answer on their own
MIN_CANDIDATE_CHARS = 12


@dataclass(frozen=True)
class Evidence:
    """The chosen evidence: `context.pieces[piece_index].text[char_start:char_end]`."""

    piece_index: int
    char_start: int
    char_end: int
    score: float
    best_cosine: float | None  # None when no embedder scored it


def _candidates(question: str, context: AssembledContext, ranked_chunks: list[int]):
    """(rank, piece index, start, end, lexical score in [0, 1]) of every sentence of the top passages."""
    where = {}
    for pi, piece in enumerate(context.pieces):
        for seg in piece.segments:
            where[seg.chunk_id] = (pi, seg)
    out = []
    for rank, cid in enumerate(c for c in ranked_chunks if c in where):
        if rank >= EVIDENCE_PASSAGES:
            break
        pi, seg = where[cid]
        text = context.pieces[pi].text[seg.offset : seg.offset + seg.length]
        scored = sentence_scores(question, text, by_lines=context.pieces[pi].domain == "code")
        for s, e, lex in scored:
            if e - s >= MIN_CANDIDATE_CHARS or len(scored) == 1:
                out.append((rank, pi, seg.offset + s, seg.offset + e, lex))
    # lexical scores to [0, 1] over all candidates, so passages compare
    top = max((c[4] for c in out), default=0.0) or 1.0
    return [(*c[:4], c[4] / top) for c in out]


def select_evidence(
    question: str,
    context: AssembledContext,
    ranked_chunks: list[int],
    embedder=None,
    answer_types: bool = True,
) -> Evidence | None:
    """The best evidence sentence (see the module docstring); None when the context has no text.
    `answer_types=False` leaves the type term out (RAGConfig.answer_types)."""
    cands = _candidates(question, context, ranked_chunks)
    if not cands:
        return None
    lexical = np.array([c[4] for c in cands], dtype=np.float32)
    ranks = np.array([c[0] for c in cands], dtype=np.float32)
    kinds = expected_types(question) if answer_types else frozenset()
    typed = np.array(
        [type_match(kinds, context.pieces[pi].text[s:e]) for _, pi, s, e, _ in cands], dtype=np.float32
    )
    cosine = None
    if embedder is not None:
        texts = [context.pieces[pi].text[s:e][:MAX_EVIDENCE_CHARS] for _, pi, s, e, _ in cands]
        vecs = embedder.embed([question, *texts])
        cosine = vecs[1:] @ vecs[0]
        scores = cosine + LEXICAL_WEIGHT * lexical - RANK_PENALTY * ranks + TYPE_WEIGHT * typed
    else:
        scores = lexical - RANK_PENALTY * ranks + TYPE_WEIGHT * typed
    best = int(np.argmax(scores))
    _, pi, s, e, _ = cands[best]
    e = shown_end(context.pieces[pi].text, s, e)
    return Evidence(pi, s, e, float(scores[best]), None if cosine is None else float(cosine.max()))


def shown_end(text: str, start: int, end: int) -> int:
    """Where a candidate text[start:end] ends as the answer shows it: cut at a space under
    MAX_EVIDENCE_CHARS when longer."""
    if end - start <= MAX_EVIDENCE_CHARS:
        return end
    cut = text.rfind(" ", start, start + MAX_EVIDENCE_CHARS)
    return cut if cut > start else start + MAX_EVIDENCE_CHARS
