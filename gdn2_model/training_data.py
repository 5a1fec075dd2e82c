"""Batches for reader training: step `s` always gets the same batch, so training resumes identically.

`ReaderBatches[s]` seeds a generator from (seed, s), picks the curriculum's sequence length and
batch size for step s, draws a task (extractive QA or a NIAH task) per row, lays it out with
`build_reader_input` and returns padded tensors with gold start/end masks. A `DataLoader` over
`range(start_step, steps)` with workers then builds batches in parallel without changing them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from gdn2_model.data.corpus import Document
from gdn2_model.data.niah import NeedleTaskMaker
from gdn2_model.data.qa import QATaskMaker
from gdn2_model.data.sample import Sample
from gdn2_model.prompt import ReaderInput, build_reader_input
from gdn2_model.tokenizer import PAD, special_id


@dataclass(frozen=True)
class Phase:
    """From `start` (fraction of the run's steps; first phase 0.0) on: `batch` rows of `seq_len` tokens."""

    start: float
    seq_len: int
    batch: int


@dataclass(frozen=True)
class TaskMix:
    """Probabilities of each task family per row (they need not sum to 1; they are normalised)."""

    qa: float = 0.6
    niah: float = 0.4
    niah_tasks: tuple[str, ...] = ("s-niah-1", "s-niah-2", "s-niah-3", "mk-niah-1", "mv-niah")


def phase_at(curriculum: Sequence[Phase], step: int, steps: int) -> Phase:
    """The curriculum phase in force at `step` of a `steps`-step run (phases sorted by start)."""
    cur = curriculum[0]
    for p in curriculum:
        if p.start * steps <= step:
            cur = p
    return cur


def phase_first_step(phase: Phase, steps: int) -> int:
    """First step of `phase` in a `steps`-step run."""
    return math.ceil(phase.start * steps)


def encode_sample(
    tok: Tokenizer, sample: Sample, max_tokens: int
) -> tuple[ReaderInput, list[tuple[int, int]]]:
    """Lay out a sample and map its gold answers to token spans (answers cut off by the budget drop out)."""
    ri = build_reader_input(tok, sample.question, sample.pieces, max_tokens=max_tokens)
    spans = [s for a in sample.answers if (s := ri.token_span(a.piece, a.char_start, a.char_end)) is not None]
    return ri, spans


class ReaderBatches(torch.utils.data.Dataset):
    """Map-style dataset indexed by training step; each item is a whole batch (dict of tensors)."""

    def __init__(
        self,
        tok: Tokenizer,
        docs: Sequence[Document],
        curriculum: Sequence[Phase],
        seed: int,
        mix: TaskMix | None = None,
        steps: int = 1,
    ) -> None:
        if not curriculum or curriculum[0].start != 0:
            raise ValueError("curriculum must be non-empty and its first phase start at 0.0")
        self.steps = steps
        self.tok = tok
        self.curriculum = sorted(curriculum, key=lambda p: p.start)
        self.seed = seed
        self.mix = mix or TaskMix()
        self.qa = QATaskMaker(docs)
        self.niah = NeedleTaskMaker(docs)
        self.pad_id = special_id(tok, PAD)

    def __len__(self) -> int:
        return 1 << 30

    def make_sample(self, rng: random.Random, seq_len: int) -> Sample:
        total = self.mix.qa + self.mix.niah
        # aim a little under the budget so whole pieces fit and few answers get cut
        target = int(seq_len * rng.uniform(0.55, 0.92))
        if rng.random() * total < self.mix.qa:
            return self.qa.sample(rng, target)
        return self.niah.sample(rng, rng.choice(self.mix.niah_tasks), target)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        phase = phase_at(self.curriculum, step, self.steps)
        rng = random.Random(self.seed * 1_000_003 + step)
        rows = []
        for _ in range(50 * phase.batch):
            ri, spans = encode_sample(self.tok, self.make_sample(rng, phase.seq_len), phase.seq_len)
            if spans:
                rows.append((ri, spans))
            if len(rows) == phase.batch:
                break
        else:
            raise RuntimeError(
                f"could not fit answers into {phase.seq_len}-token rows: is seq_len too short?"
            )
        return collate(rows, phase.seq_len, self.pad_id)


def collate(rows: Sequence[tuple[ReaderInput, list[tuple[int, int]]]], seq_len: int, pad_id: int) -> dict:
    """Right-pad rows to `seq_len` (a causal model never sees the padding) with gold start/end masks."""
    b = len(rows)
    ids = np.full((b, seq_len), pad_id, dtype=np.int64)
    match = np.zeros((b, seq_len), dtype=np.int64)
    cand = np.zeros((b, seq_len), dtype=bool)
    gs = np.zeros((b, seq_len), dtype=bool)
    ge = np.zeros((b, seq_len), dtype=bool)
    lengths = np.zeros(b, dtype=np.int64)
    for i, (ri, spans) in enumerate(rows):
        n = len(ri)
        ids[i, :n] = ri.input_ids
        match[i, :n] = ri.question_match
        cand[i, :n] = ri.answer_mask()
        lengths[i] = n
        for s, e in spans:
            gs[i, s] = True
            ge[i, e] = True
    return {
        "input_ids": torch.from_numpy(ids),
        "question_match": torch.from_numpy(match),
        "candidates": torch.from_numpy(cand),
        "gold_start": torch.from_numpy(gs),
        "gold_end": torch.from_numpy(ge),
        "lengths": torch.from_numpy(lengths),
    }


def span_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean over rows of -log P(start in gold) - log P(end in gold), softmax over candidate tokens.

    Several gold spans (multi-value needles) share the probability mass: any one of them is right.
    """
    cand = batch["candidates"]
    total = start_logits.new_zeros((), dtype=torch.float32)
    for logits, gold in ((start_logits, batch["gold_start"]), (end_logits, batch["gold_end"])):
        x = logits.float().masked_fill(~cand, float("-inf"))
        logz = torch.logsumexp(x, dim=-1)
        logp_gold = torch.logsumexp(x.masked_fill(~gold, float("-inf")), dim=-1)
        total = total + (logz - logp_gold).mean()
    return total
