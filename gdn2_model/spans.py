"""Answer spans from a reader's start/end logits: the reference and the packed pick on the device.

A span (s, e) lies inside one piece, is at most `max_len` tokens long, and scores
log P(start = s) + log P(end = e) (each a softmax over the answer tokens of its own context). The k best
non-overlapping spans are taken greedily, best end first:

1. `best_start_per_end`: for every end e, the best start in [e - max_len + 1, e] of the same piece
   (max_len vectorised passes over the shifted start scores; no T x T matrix);
2. ends sorted by that score, best first (a stable sort: equal scores keep token order);
3. `greedy_spans`: walk the ends, keep a span unless it overlaps one kept, until k or a -inf score;
4. `span_text`: token span -> character span of the piece, trimmed of whitespace and separators (`:;,`),
   widened to whole words.

`best_spans` does 1-4 on one context's CPU logits: the reference. `pick_spans_packed` does 1-3 for many
contexts packed on one token axis, where the logits are (the GPU after a packed pass): step 1 over
[T, max_len] windows (`best_start_per_end_windows`) for all of them at once, and only each context's
best `2 * k * max_len` ends go to the host, which provably hold its first k kept spans (each kept span
overlaps at most 2 * max_len - 1 ends). It returns what `best_spans` returns for each context alone
(tests/rag/test_serve_spans.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gdn2_model.prompt import ContextPiece, ReaderInput

NEG_INF = float("-inf")


@dataclass(frozen=True)
class ReaderSpan:
    """An answer: `text == pieces[piece_index].text[char_start:char_end]`; score is P(start) * P(end)."""

    piece_index: int
    char_start: int
    char_end: int
    text: str
    score: float


@dataclass(frozen=True)
class TokenSpan:
    """A span as tokens `start..end` (inclusive) of its input, with log P(start) + log P(end)."""

    start: int
    end: int
    log_score: float


def best_start_per_end(
    ls: torch.Tensor, le: torch.Tensor, cand: torch.Tensor, piece: torch.Tensor, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1: (best score, its start) per end token, [T] each; -inf where no span ends there.

    ls, le: log-probabilities [T]; cand: answer tokens [T] bool; piece: [T] piece of each token (spans never
    cross a change of it). Ties keep the shorter span (a longer one must score higher).
    """
    t = ls.shape[0]
    best = torch.full((t,), NEG_INF, device=ls.device, dtype=ls.dtype)
    pos = torch.arange(t, device=ls.device)
    best_s = pos.clone()
    for d in range(min(max_len, t)):
        s_idx = pos - d
        ok = (s_idx >= 0) & cand
        s_c = s_idx.clamp(min=0)
        ok &= cand[s_c] & (piece[s_c] == piece)
        sc = torch.where(ok, ls[s_c] + le, NEG_INF)
        better = sc > best
        best = torch.where(better, sc, best)
        best_s = torch.where(better, s_c, best_s)
    return best, best_s


def best_start_per_end_windows(
    ls: torch.Tensor,
    le: torch.Tensor,
    cand: torch.Tensor,
    piece: torch.Tensor,
    max_len: int,
    limit: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`best_start_per_end` in a dozen operations over [T, max_len] windows instead of max_len passes of
    ~10 small ones: on a GPU the loop is launch-bound (~5 ms per context), this is not. Same ties: among
    equal scores the first maximum over d = e - s, the shorter span, wins. `limit`: optional per-token
    max_len [T], at most `max_len` (a packed axis of contexts that asked for different lengths)."""
    t, dev = ls.shape[0], ls.device
    pad = max_len - 1

    def windows(x: torch.Tensor, fill) -> torch.Tensor:
        # row e holds x[e - d] for d = 0 .. max_len - 1 (fill before the first token)
        padded = torch.cat([torch.full((pad,), fill, dtype=x.dtype, device=dev), x])
        return padded.unfold(0, max_len, 1).flip(-1)  # [T, max_len]

    d = torch.arange(max_len, device=dev)
    ok = windows(cand, False) & cand[:, None] & (windows(piece, -1) == piece[:, None])
    if limit is not None:
        ok &= d[None, :] < limit[:, None]
    sc = torch.where(ok, windows(ls, NEG_INF) + le[:, None], NEG_INF)
    best, d_best = sc.max(-1)
    return best, torch.arange(t, device=dev) - d_best


def greedy_spans(
    ends: Sequence[int], scores: Sequence[float], starts: Sequence[int], k: int
) -> list[TokenSpan]:
    """Step 3: walk ends best first (their scores and best starts alongside), keep spans that overlap none
    kept, stop at k spans or at the first -inf score."""
    out: list[TokenSpan] = []
    for e, v, s in zip(ends, scores, starts, strict=True):
        if len(out) >= k or v == NEG_INF:
            break
        if any(s <= kept.end and e >= kept.start for kept in out):
            continue
        out.append(TokenSpan(int(s), int(e), float(v)))
    return out


SEPARATORS = ":;,"


def span_text(ri: ReaderInput, pieces: Sequence[ContextPiece], span: TokenSpan) -> ReaderSpan:
    """Step 4: the token span as characters of its piece, whitespace and separators trimmed, widened to
    whole words."""
    p, cs, ce = ri.char_span(span.start, span.end)
    text = pieces[p].text
    # token offsets include the leading space of byte-level BPE tokens: trim whitespace off the span, and the
    # separators around an answer, which are never part of it ("is: 8721488" -> "8721488")
    while cs < ce and (text[cs].isspace() or text[cs] in SEPARATORS):
        cs += 1
    while ce > cs and (text[ce - 1].isspace() or text[ce - 1] in SEPARATORS):
        ce -= 1
    # a span that starts or ends inside a word ("convey|ed") is widened to whole words
    while 0 < cs < ce and text[cs - 1].isalnum() and text[cs].isalnum():
        cs -= 1
    while cs < ce < len(text) and text[ce].isalnum() and text[ce - 1].isalnum():
        ce += 1
    return ReaderSpan(p, cs, ce, text[cs:ce], math.exp(span.log_score))


def best_spans(
    ri: ReaderInput,
    pieces: Sequence[ContextPiece],
    start: torch.Tensor,
    end: torch.Tensor,
    *,
    k: int = 1,
    max_len: int = 32,
) -> list[ReaderSpan]:
    """Top-k non-overlapping spans of one context, best first (the reference: steps 1-4 on the CPU)."""
    cand = torch.from_numpy(ri.answer_mask())
    piece = torch.from_numpy(ri.piece_index).long()
    ls = torch.log_softmax(start.masked_fill(~cand, NEG_INF), -1)
    le = torch.log_softmax(end.masked_fill(~cand, NEG_INF), -1)
    best, best_s = best_start_per_end(ls, le, cand, piece, max_len)
    order = torch.sort(best, descending=True, stable=True).indices
    kept = greedy_spans(order.tolist(), best[order].tolist(), best_s[order].tolist(), k)
    return [span_text(ri, pieces, s) for s in kept]


@dataclass(frozen=True)
class PackedSpanInputs:
    """What `pick_spans_packed` needs besides the logits, for contexts packed on one token axis.

    cu: [N+1] token offsets of the contexts; piece_key: [Ttot] int64 on the logits' device, the piece of
    each answer token made unique across contexts, -1 elsewhere; ks, max_lens: per context.
    """

    cu: list[int]
    piece_key: torch.Tensor
    ks: list[int]
    max_lens: list[int]

    @classmethod
    def build(
        cls, inputs: Sequence[ReaderInput], ks: Sequence[int], max_lens: Sequence[int], device: torch.device
    ) -> PackedSpanInputs:
        if any(m < 1 for m in max_lens):
            raise ValueError(f"max_answer_tokens must be >= 1, got {list(max_lens)}")
        cu = [0, *np.cumsum([len(ri) for ri in inputs]).tolist()]
        # a piece index is below its context's length, so adding the context's offset keeps keys apart
        key = np.concatenate(
            [np.where(ri.piece_index >= 0, ri.piece_index.astype(np.int64) + a, -1)
             for ri, a in zip(inputs, cu, strict=False)]
        )  # fmt: skip
        return cls(cu, torch.from_numpy(key).to(device, non_blocking=True), list(ks), list(max_lens))


def pick_spans_packed(
    start: torch.Tensor, end: torch.Tensor, packed: PackedSpanInputs
) -> list[list[TokenSpan]]:
    """Steps 1-3 for every context of a packed axis: start/end [Ttot] float32 logits (end scores aligned
    per context, as `best_spans` takes them) on any device; one list of token spans per context."""
    cu, n = packed.cu, len(packed.cu) - 1
    dev = start.device
    cand = packed.piece_key >= 0
    ms, me = start.masked_fill(~cand, NEG_INF), end.masked_fill(~cand, NEG_INF)
    ls, le = torch.empty_like(ms), torch.empty_like(me)
    for i in range(n):
        # each context's own softmax, with the very op `best_spans` runs
        ls[cu[i] : cu[i + 1]] = torch.log_softmax(ms[cu[i] : cu[i + 1]], -1)
        le[cu[i] : cu[i + 1]] = torch.log_softmax(me[cu[i] : cu[i + 1]], -1)
    lengths = torch.tensor(np.diff(cu), device=dev)
    top = max(packed.max_lens)
    limit = None
    if min(packed.max_lens) < top:
        limit = torch.repeat_interleave(torch.tensor(packed.max_lens, device=dev), lengths)
    best, best_s = best_start_per_end_windows(ls, le, cand, packed.piece_key, top, limit)
    # ends best first within each context: a stable sort by score, then a stable sort by context
    order = torch.sort(best, descending=True, stable=True).indices
    context = torch.repeat_interleave(torch.arange(n, device=dev), lengths)
    order = order[torch.sort(context[order], stable=True).indices]
    heads = [min(cu[i + 1] - cu[i], 2 * packed.ks[i] * packed.max_lens[i]) for i in range(n)]
    take = torch.from_numpy(np.concatenate([np.arange(cu[i], cu[i] + h) for i, h in enumerate(heads)]))
    ends = order[take.to(dev)]
    # one transfer: positions below 2**53 and float32 scores are exact in float64
    host = torch.stack([ends.double(), best[ends].double(), best_s[ends].double()]).cpu().numpy()
    out, at = [], 0
    for i, h in enumerate(heads):
        e, v, s = host[:, at : at + h]
        at += h
        spans = greedy_spans((e - cu[i]).tolist(), v.tolist(), (s - cu[i]).tolist(), packed.ks[i])
        out.append(spans)
    return out
