"""The reader runtime: load a checkpoint, read question + context pieces, return a character span.

    reader = Reader.load(None)                       # the shipped default (gdn2_model/checkpoints/default/)
    span = reader.extract("What does -a do?", [ContextPiece(text, header), ...])
    span.text == pieces[span.piece_index].text[span.char_start:span.char_end]

The context is laid out query-first (`gdn2_model/prompt.py`) and streamed through the model in
segments, so memory follows the segment length rather than the context (GDN-2's state is
constant-size). The best span maximises log P(start) + log P(end) over candidate tokens of one
piece, at most `max_answer_tokens` long (`gdn2_model/spans.py`). `reader.layout()` counts that layout's
tokens (for context budgets) and keeps the texts it counts tokenised for `prepare`; `reader.generate`
writes a free-text answer after it (checkpoints with an LM head). `token_spans_batch` reads many inputs
in packed varlen passes (the server's micro-batched reads).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdn2_model.prompt import (
    ContextPiece,
    ReaderInput,
    ReaderLayout,
    align_end_logits,
    align_end_logits_packed,
    build_reader_input,
)
from gdn2_model.spans import (
    PackedSpanInputs,
    ReaderSpan,
    TokenSpan,
    best_spans,
    pick_spans_packed,
    span_text,
)
from gdn2_model.token_cache import TokenCache
from gdn2_model.tokenizer import EOS, PAD, load_tokenizer, special_id

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"
# tokens of one packed pass: ~15 KB of activations per token for the default reader, so ~12 GiB
# (bench/results/serve.md); a pass of 32 x 100k tokens reads no faster per token than one of 10 x 100k
MAX_PASS_TOKENS = 1_048_576


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
        # token ids of every text laid out or counted (`layout()`), so a chunk is tokenised once
        self.tokens = TokenCache(tokenizer)

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

    def layout(self, repeat_question: bool = False) -> ReaderLayout:
        """Token costs of this reader's prompt layout; the texts it counts stay tokenised for `prepare`."""
        return ReaderLayout(self.tokenizer, repeat_question=repeat_question, cache=self.tokens)

    def prepare(
        self,
        question: str,
        pieces: Sequence[ContextPiece],
        *,
        repeat_question: bool = False,
        max_tokens: int | None = None,
        layout: str = "query_first",
    ) -> ReaderInput:
        """The laid-out input (CPU work a caller can do in its own thread); texts seen before, counted by
        `layout()` or read earlier, are not tokenised again (`self.tokens`)."""
        return build_reader_input(
            self.tokenizer,
            question,
            pieces,
            max_tokens=max_tokens,
            repeat_question=repeat_question,
            layout=layout,
            cache=self.tokens,
        )

    @torch.no_grad()
    def _device_logits(self, ri: ReaderInput, segment_len: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
        """Start/end logits [T] float32 of one input on the reader's device (end scores aligned),
        streamed in segments for GDN-2.

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
        end = out.end_logits[0].float()
        if getattr(self.net.config, "reader_end_shift", False):
            end = align_end_logits(end)
        return out.start_logits[0].float(), end

    def logits(self, ri: ReaderInput, segment_len: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
        """Start/end logits [T] (float32, on CPU) of one laid-out input (`_device_logits`)."""
        start, end = self._device_logits(ri, segment_len)
        return start.cpu(), end.cpu()

    def _passes(self, inputs: Sequence[ReaderInput], max_pass_tokens: int) -> list[tuple[list[int], bool]]:
        """Inputs grouped in order into passes of at most `max_pass_tokens` tokens: (indices, packed).

        An input longer than the cap, or any input of a network without packing (the transformer
        baseline), is a pass of its own, read by `_device_logits`.
        """
        passes: list[tuple[list[int], bool]] = []
        group: list[int] = []
        group_tokens = 0
        for i, ri in enumerate(inputs):
            n = len(ri)
            if not self.streams or n > max_pass_tokens:
                passes.append(([i], False))
                continue
            if group and group_tokens + n > max_pass_tokens:
                passes.append((group, True))
                group, group_tokens = [], 0
            group.append(i)
            group_tokens += n
        if group:
            passes.append((group, True))
        return passes

    @torch.no_grad()
    def _read(
        self, inputs: Sequence[ReaderInput], packed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """One pass: start/end logits [Ttot] on the device (end aligned per input) and the offsets [N+1].

        Packed: one varlen forward (`cu_seqlens`) over the inputs in a single row; each sequence starts
        from a zero state and never sees its neighbours (the layers' varlen contract).
        """
        if not packed:
            (ri,) = inputs
            start, end = self._device_logits(ri)
            return start, end, [0, len(ri)]
        cu = [0, *np.cumsum([len(ri) for ri in inputs]).tolist()]
        ids = torch.from_numpy(np.concatenate([ri.input_ids for ri in inputs])).to(self.device)[None]
        match = None
        if any(ri.question_match is not None for ri in inputs):
            match = np.concatenate(
                [ri.question_match if ri.question_match is not None else np.zeros(len(ri), np.int64)
                 for ri in inputs]
            )  # fmt: skip
            match = torch.from_numpy(match).to(self.device)[None]
        cu_t = torch.tensor(cu, dtype=torch.int32, device=self.device)
        out = self.net(ids, question_match=match, cu_seqlens=cu_t, use_cache=False)
        end = out.end_logits[0].float()
        if getattr(self.net.config, "reader_end_shift", False):
            end = align_end_logits_packed(end, cu)
        return out.start_logits[0].float(), end, cu

    def logits_batch(
        self, inputs: Sequence[ReaderInput], max_pass_tokens: int = MAX_PASS_TOKENS
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`logits` of several laid-out inputs, packed into varlen passes (`cu_seqlens`), in input order.

        Each result equals `logits(ri)` of that input alone. One pass over N contexts replaces N calls:
        the fixed per-call cost is paid once and the kernels' chunk-to-chunk state pass runs N sequences
        side by side. A pass holds its activations for all its tokens (~15 KB per token for the default
        reader), which `max_pass_tokens` bounds.
        """
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(inputs)
        for group, packed in self._passes(inputs, max_pass_tokens):
            start, end, cu = self._read([inputs[i] for i in group], packed)
            start, end = start.cpu(), end.cpu()
            for j, i in enumerate(group):
                out[i] = (start[cu[j] : cu[j + 1]], end[cu[j] : cu[j + 1]])
        return out  # type: ignore[return-value]

    def token_spans_batch(
        self,
        inputs: Sequence[ReaderInput],
        ks: Sequence[int],
        max_answer_tokens: Sequence[int],
        max_pass_tokens: int = MAX_PASS_TOKENS,
    ) -> list[list[TokenSpan]]:
        """The `ks[i]` best token spans of each input (inputs with answer tokens), read in packed passes
        and picked where the logits are (`spans.pick_spans_packed`); `span_text` turns them into
        characters. Equal to `extract_spans` of each input alone."""
        out: list[list[TokenSpan]] = [[] for _ in inputs]
        for group, packed in self._passes(inputs, max_pass_tokens):
            found = self._read_spans(
                [inputs[i] for i in group],
                [ks[i] for i in group],
                [max_answer_tokens[i] for i in group],
                packed,
            )
            for i, spans in zip(group, found, strict=True):
                out[i] = spans
        return out

    def _read_spans(
        self, inputs: Sequence[ReaderInput], ks: Sequence[int], max_lens: Sequence[int], packed: bool
    ) -> list[list[TokenSpan]]:
        """One pass (`_read`), then each input's token spans picked on the logits' device."""
        start, end, _ = self._read(inputs, packed)
        return pick_spans_packed(start, end, PackedSpanInputs.build(inputs, ks, max_lens, start.device))

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
        """The `k` best spans from one input's CPU logits (`best_spans`, the reference)."""
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
        max_pass_tokens: int = MAX_PASS_TOKENS,
    ) -> list[list[ReaderSpan]]:
        """`extract_spans` of several (question, pieces) at once, read in packed passes.

        Returns one list per query, equal to what `extract_spans` returns for it alone (empty when its
        pieces hold no text). A server splits the same steps across threads: each request prepares its
        input and turns token spans into text itself, one worker runs `token_spans_batch`
        (gdn2_rag/serve/reader.py).
        """
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        inputs = [self.prepare(q, pieces, repeat_question=repeat_question) for q, pieces in queries]
        todo = [i for i, ri in enumerate(inputs) if bool(ri.answer_mask().any())]
        found = self.token_spans_batch(
            [inputs[i] for i in todo], [k] * len(todo), [max_answer_tokens] * len(todo), max_pass_tokens
        )
        out: list[list[ReaderSpan]] = [[] for _ in queries]
        for i, spans in zip(todo, found, strict=True):
            out[i] = [span_text(inputs[i], queries[i][1], s) for s in spans]
        return out

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

        Spans are picked on the reader's device (`spans.pick_spans_packed`, equal to `best_spans` on the
        CPU logits). repeat_question: lay the question out again after the context
        (`build_reader_input`); the shipped checkpoint was trained without it.
        """
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        ri = self.prepare(
            question, pieces, max_tokens=max_tokens, layout=layout, repeat_question=repeat_question
        )
        if not bool(ri.answer_mask().any()):
            return []
        # streamed (memory bounded by the segment, not the context), one context alone
        (found,) = self._read_spans([ri], [k], [max_answer_tokens], packed=False)
        return [span_text(ri, pieces, s) for s in found]

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
        ri = self.prepare(question, pieces, repeat_question=repeat_question)
        ids = torch.from_numpy(ri.input_ids)[None].to(self.device)
        out = self.net.generate(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=special_id(self.tokenizer, EOS),
            pad_token_id=special_id(self.tokenizer, PAD),
        )
        return self.tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True).strip()
