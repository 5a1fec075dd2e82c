"""The reader runtime: load a checkpoint, read question + context pieces, return a character span.

    reader = Reader.load(None)                       # the shipped default (gdn2_model/checkpoints/default/)
    span = reader.extract("What does -a do?", [ContextPiece(text, header), ...])
    span.text == pieces[span.piece_index].text[span.char_start:span.char_end]

The context is laid out query-first (`gdn2_model/prompt.py`) and streamed through the model in
segments, so memory follows the segment length rather than the context (GDN-2's state is
constant-size). The best span maximises log P(start) + log P(end) over candidate tokens of one
piece, at most `max_answer_tokens` long. `ReaderLayout(reader.tokenizer)` counts that layout's tokens
(for context budgets); `reader.generate` writes a free-text answer after it (checkpoints with an LM head).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdn2_model.prompt import ContextPiece, ReaderInput, align_end_logits, build_reader_input
from gdn2_model.tokenizer import EOS, PAD, load_tokenizer, special_id

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"


@dataclass(frozen=True)
class ReaderSpan:
    """An answer: `text == pieces[piece_index].text[char_start:char_end]`; score is P(start) * P(end)."""

    piece_index: int
    char_start: int
    char_end: int
    text: str
    score: float


def _load_network(path: Path, train_cfg: dict[str, Any]) -> torch.nn.Module:
    if train_cfg.get("arch", "gdn2") == "transformer":
        from safetensors.torch import load_file

        from gdn2_model.train import TrainConfig, build_model

        net = build_model(TrainConfig.from_dict(train_cfg))
        net.load_state_dict(load_file(str(path / "model.safetensors")))
        return net
    from gdn2_model import GDN2ForReader

    return GDN2ForReader.from_pretrained(str(path))


class Reader:
    """A loaded extractive reader (network + tokenizer) on one device."""

    def __init__(self, net: torch.nn.Module, tokenizer, path: Path, device: torch.device, dtype: torch.dtype):
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.path = path
        self.device = device
        self.dtype = dtype
        self.streams = hasattr(net, "config") and getattr(net.config, "model_type", "") == "gdn2"

    @classmethod
    def load(
        cls, path: str | Path | None = None, device: str = "cpu", dtype: torch.dtype | None = None
    ) -> Reader:
        """Load a checkpoint folder (None: the shipped default); dtype: bf16 on CUDA, else fp32."""
        p = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if not (p / "tokenizer.json").is_file() or not any(p.glob("*.safetensors*")):
            raise FileNotFoundError(
                f"no reader checkpoint at {p} (expected tokenizer.json and *.safetensors)"
            )
        dev = torch.device(device)
        dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        cfg_file = p / "train_config.json"
        train_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        net = _load_network(p, train_cfg).to(dev, dtype)
        return cls(net, load_tokenizer(p), p, dev, dtype)

    @cached_property
    def identity(self) -> dict[str, Any]:
        """Name, path, parameter count and a sha256 over the weight files (for answer provenance).

        Computed once per loaded reader: every answer carries it, and hashing re-reads all weights.
        """
        h = hashlib.sha256()
        for f in sorted(self.path.glob("*.safetensors")):
            h.update(f.read_bytes())
        return {
            "name": self.path.name,
            "path": str(self.path),
            "params": sum(p.numel() for p in self.net.parameters()),
            "sha256": h.hexdigest()[:16],
        }

    @torch.no_grad()
    def logits(self, ri: ReaderInput, segment_len: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
        """Start/end logits [T] (float32, on CPU) of one laid-out input, streamed in segments for GDN-2.

        32k-token segments: at 100k tokens on an H200 the default reader takes 80 ms in 0.47 GiB of
        activations, against 147 ms / 0.12 GiB with 8k segments (a fixed ~10 ms per call dominates a
        small model) and 72 ms / 1.47 GiB in one pass (bench/results/reader.md).
        """
        ids = torch.from_numpy(ri.input_ids).to(self.device)[None]
        match = ri.question_match
        match = None if match is None else torch.from_numpy(match).to(self.device)[None]
        if self.streams:
            from gdn2_model import streaming_prefill

            out = streaming_prefill(self.net, ids, segment_len=segment_len, question_match=match)
        else:
            out = self.net(ids, question_match=match)
        end = out.end_logits[0].float().cpu()
        if getattr(self.net.config, "reader_end_shift", False):
            end = align_end_logits(end)
        return out.start_logits[0].float().cpu(), end

    @torch.no_grad()
    def logits_batch(
        self, inputs: Sequence[ReaderInput], max_pass_tokens: int = 1_048_576
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`logits` of several laid-out inputs, packed into varlen passes (`cu_seqlens`), in input order.

        Inputs are packed in order into passes of at most `max_pass_tokens` tokens; each sequence starts
        from a zero state and never sees its neighbours (the layers' varlen contract), so every result
        equals `logits(ri)` of that input alone. One pass over N contexts replaces N calls: the fixed
        per-call cost is paid once and the kernels' chunk-to-chunk state pass runs N sequences side by
        side. A pass holds its activations for all its tokens (~15 KB per token for the default reader),
        which `max_pass_tokens` bounds. An input longer than that, or a network without packing (the
        transformer baseline), is read alone by `logits`.
        """
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(inputs)
        group: list[int] = []
        group_tokens = 0

        def flush() -> None:
            nonlocal group, group_tokens
            if group:
                for i, pair in zip(group, self._packed_logits([inputs[i] for i in group]), strict=True):
                    out[i] = pair
            group, group_tokens = [], 0

        for i, ri in enumerate(inputs):
            n = len(ri)
            if not self.streams or n > max_pass_tokens:
                out[i] = self.logits(ri)
                continue
            if group_tokens + n > max_pass_tokens:
                flush()
            group.append(i)
            group_tokens += n
        flush()
        return out  # type: ignore[return-value]

    def _packed_logits(self, inputs: Sequence[ReaderInput]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One varlen forward over `inputs` packed into a single row; per-input (start, end) logits."""
        lengths = [len(ri) for ri in inputs]
        ids = torch.from_numpy(np.concatenate([ri.input_ids for ri in inputs])).to(self.device)[None]
        match = None
        if any(ri.question_match is not None for ri in inputs):
            match = np.concatenate(
                [ri.question_match if ri.question_match is not None else np.zeros(len(ri), np.int64)
                 for ri in inputs]
            )  # fmt: skip
            match = torch.from_numpy(match).to(self.device)[None]
        cu = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32, device=self.device)
        out = self.net(ids, question_match=match, cu_seqlens=cu, use_cache=False)
        start_all, end_all = out.start_logits[0].float().cpu(), out.end_logits[0].float().cpu()
        shift = getattr(self.net.config, "reader_end_shift", False)
        result = []
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
            end = end_all[a:b]
            result.append((start_all[a:b], align_end_logits(end) if shift else end))
        return result

    def prepare(
        self, question: str, pieces: Sequence[ContextPiece], *, repeat_question: bool = False
    ) -> ReaderInput:
        """The laid-out input of `extract_spans` (tokenising: CPU work a caller can do in its own thread)."""
        return build_reader_input(self.tokenizer, question, pieces, repeat_question=repeat_question)

    def spans(
        self,
        ri: ReaderInput,
        pieces: Sequence[ContextPiece],
        start: torch.Tensor,
        end: torch.Tensor,
        *,
        k: int = 1,
        max_answer_tokens: int = 32,
    ) -> list[ReaderSpan]:
        """The `k` best spans from one input's logits (`extract_spans` = prepare -> logits -> spans)."""
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        return best_spans(ri, pieces, start, end, k=k, max_len=max_answer_tokens)

    def extract_spans_batch(
        self,
        queries: Sequence[tuple[str, Sequence[ContextPiece]]],
        *,
        k: int = 1,
        max_answer_tokens: int = 32,
        repeat_question: bool = False,
        max_pass_tokens: int = 1_048_576,
    ) -> list[list[ReaderSpan]]:
        """`extract_spans` of several (question, pieces) at once, read in packed passes (`logits_batch`).

        Returns one list per query, equal to what `extract_spans` returns for it alone (empty when its
        pieces hold no text). A server splits the same three steps across threads: each request prepares
        and picks its spans itself, one worker runs `logits_batch` (gdn2_rag/serve/reader.py).
        """
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        inputs = [self.prepare(q, pieces, repeat_question=repeat_question) for q, pieces in queries]
        todo = [i for i, ri in enumerate(inputs) if bool(ri.answer_mask().any())]
        logits = self.logits_batch([inputs[i] for i in todo], max_pass_tokens=max_pass_tokens)
        found: list[list[ReaderSpan]] = [[] for _ in queries]
        for i, (start, end) in zip(todo, logits, strict=True):
            found[i] = self.spans(
                inputs[i], queries[i][1], start, end, k=k, max_answer_tokens=max_answer_tokens
            )
        return found

    def extract_spans(
        self,
        question: str,
        pieces: Sequence[ContextPiece],
        *,
        k: int = 1,
        max_answer_tokens: int = 32,
        max_tokens: int | None = None,
        layout: str = "query_first",
        repeat_question: bool = False,
    ) -> list[ReaderSpan]:
        """The `k` best non-overlapping spans, best first (empty when no piece has text).

        repeat_question: lay the question out again after the context (`build_reader_input`); the
        shipped checkpoint was trained without it.
        """
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        ri = build_reader_input(
            self.tokenizer,
            question,
            pieces,
            max_tokens=max_tokens,
            layout=layout,
            repeat_question=repeat_question,
        )
        cand = torch.from_numpy(ri.answer_mask())
        if not bool(cand.any()):
            return []
        start, end = self.logits(ri)
        return best_spans(ri, pieces, start, end, k=k, max_len=max_answer_tokens)

    def extract(
        self, question: str, pieces: Sequence[ContextPiece], max_answer_tokens: int = 32, **kw: Any
    ) -> ReaderSpan:
        """The best answer span; raises ValueError when the pieces hold no text."""
        spans = self.extract_spans(question, pieces, k=1, max_answer_tokens=max_answer_tokens, **kw)
        if not spans:
            raise ValueError("no context text to read: every piece is empty")
        return spans[0]

    @property
    def can_generate(self) -> bool:
        """True when the checkpoint has an LM head (`config.reader_lm_head`), so `generate` can write."""
        return getattr(self.net, "lm_head", None) is not None

    @torch.inference_mode()
    def generate(
        self,
        question: str,
        pieces: Sequence[ContextPiece],
        max_new_tokens: int = 64,
        *,
        repeat_question: bool = False,
    ) -> str:
        """A greedy free-text answer written after the query-first prompt (whitespace-stripped).

        Raises ValueError when the checkpoint has no LM head (it only extracts spans).
        """
        if not self.can_generate:
            raise ValueError("this reader checkpoint has no LM head: it extracts spans, it cannot generate")
        ri = build_reader_input(self.tokenizer, question, pieces, repeat_question=repeat_question)
        ids = torch.from_numpy(ri.input_ids)[None].to(self.device)
        out = self.net.generate(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=special_id(self.tokenizer, EOS),
            pad_token_id=special_id(self.tokenizer, PAD),
        )
        return self.tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True).strip()


def best_spans(
    ri: ReaderInput,
    pieces: Sequence[ContextPiece],
    start: torch.Tensor,
    end: torch.Tensor,
    *,
    k: int = 1,
    max_len: int = 32,
) -> list[ReaderSpan]:
    """Top-k non-overlapping (s, e) spans inside one piece by log P(start) + log P(end).

    For each end e the best start in [e - max_len + 1, e] of the same piece is found by shifting the
    start scores (max_len vectorised passes), so this is O(T * max_len) without a T x T matrix.
    """
    cand = torch.from_numpy(ri.answer_mask())
    piece = torch.from_numpy(ri.piece_index).long()
    ls = torch.log_softmax(start.masked_fill(~cand, float("-inf")), -1)
    le = torch.log_softmax(end.masked_fill(~cand, float("-inf")), -1)
    t = ls.shape[0]
    best = torch.full((t,), float("-inf"))
    best_s = torch.arange(t)
    for d in range(min(max_len, t)):
        s_idx = torch.arange(t) - d
        ok = (s_idx >= 0) & cand
        s_c = s_idx.clamp(min=0)
        ok &= cand[s_c] & (piece[s_c] == piece)
        sc = torch.where(ok, ls[s_c] + le, torch.tensor(float("-inf")))
        better = sc > best
        best = torch.where(better, sc, best)
        best_s = torch.where(better, s_c, best_s)
    out: list[ReaderSpan] = []
    taken = torch.zeros(t, dtype=torch.bool)
    for e in torch.argsort(best, descending=True).tolist():
        if len(out) >= k or best[e] == float("-inf"):
            break
        s = int(best_s[e])
        if taken[s : e + 1].any():
            continue
        taken[s : e + 1] = True
        p, cs, ce = ri.char_span(s, e)
        text = pieces[p].text
        # token offsets include the leading space of byte-level BPE tokens: trim whitespace off the span
        while cs < ce and text[cs].isspace():
            cs += 1
        while ce > cs and text[ce - 1].isspace():
            ce -= 1
        # a span that starts or ends inside a word ("convey|ed") is widened to whole words
        while 0 < cs < ce and text[cs - 1].isalnum() and text[cs].isalnum():
            cs -= 1
        while cs < ce < len(text) and text[ce].isalnum() and text[ce - 1].isalnum():
            ce += 1
        out.append(ReaderSpan(p, cs, ce, text[cs:ce], float(best[e].exp())))
    return out
