"""Data-parallel reading: a batch of questions (each with its own context) shared out over the ranks.

Each rank holds a whole reader; the questions are dealt out longest first to the rank with the least
text so far (LPT scheduling: contexts differ in length, so a plain round-robin can leave one GPU reading
long after the others), each rank answers its share with `Reader.extract_spans`, and the answers are
gathered back into question order on every rank.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch.distributed as dist
from torch.distributed import ProcessGroup

from gdn2_model.prompt import ContextPiece

__all__ = ["ReadRequest", "assign_longest_first", "read_parallel"]


@dataclass(frozen=True)
class ReadRequest:
    """One question and the context pieces to read for it."""

    question: str
    pieces: Sequence[ContextPiece] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        """The work it costs, in characters (the reader's time is linear in the context)."""
        return len(self.question) + sum(len(p.text) + len(p.header) for p in self.pieces)


def assign_longest_first(sizes: Sequence[int], world: int) -> list[list[int]]:
    """Indices of `sizes` per rank: each item, largest first, goes to the rank with the least work so far."""
    if world < 1:
        raise ValueError(f"world={world} must be at least 1")
    load = [(0, r) for r in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        work, r = heapq.heappop(load)
        shares[r].append(i)
        heapq.heappush(load, (work + sizes[i], r))
    return [sorted(s) for s in shares]


def read_parallel(
    reader,
    requests: Sequence[ReadRequest],
    *,
    group: ProcessGroup | None = None,
    **extract_kw,
) -> list[list]:
    """The spans `reader.extract_spans(question, pieces, **extract_kw)` gives for every request, in order.

    Call it on every rank of `group` with the same `requests`; each rank reads its share and every rank
    returns the full list (one list of `ReaderSpan` per request).
    """
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    mine = assign_longest_first([r.size for r in requests], world)[rank]
    answers = {i: reader.extract_spans(requests[i].question, requests[i].pieces, **extract_kw) for i in mine}
    everyone: list[dict | None] = [None] * world
    dist.all_gather_object(everyone, answers, group=group)
    merged: dict[int, list] = {}
    for part in everyone:
        merged.update(part or {})
    return [merged[i] for i in range(len(requests))]
