"""Context-parallel reading: one very long context cut into slices, one slice per rank.

GDN-2 carries everything it knows about the tokens read so far in a constant-size cache (per layer the
recurrent state S [B, H, K, V] and the conv tails). So the context is a pipeline over the sequence:

1. rank r takes tokens [bounds[r], bounds[r+1]) (`slice_bounds`);
2. it waits for the cache rank r-1 leaves after its slice (rank 0 starts empty);
3. it streams its slice through the model from that cache (`streaming_prefill`), exactly as one
   process continues a sequence segment by segment;
4. it hands its cache to rank r+1; the per-token start/end logits are gathered onto every rank.

The result equals reading the whole context on one device (tested). Each GPU holds the weights and only
its slice's activations and token ids, so the context any one GPU must hold is 1/world of it; the ranks
work one after the other on a single context, so time is that of one GPU plus the hand-offs (small: the
shipped reader's cache is ~0.8 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from gdn2_model.cache import GDN2Cache
from gdn2_model.distributed.comm import gather_rows, recv_cache, send_cache, slice_bounds
from gdn2_model.prompt import ContextPiece, align_end_logits, build_reader_input
from gdn2_model.streaming import streaming_prefill

__all__ = ["ContextParallelOutput", "context_parallel_extract", "context_parallel_prefill"]


@dataclass
class ContextParallelOutput:
    """start/end logits [B, T] of the whole context on every rank (None for a model without span heads);
    `cache`: the state after the last token, on the last rank only (None elsewhere)."""

    start_logits: torch.Tensor | None
    end_logits: torch.Tensor | None
    cache: GDN2Cache | None


@torch.no_grad()
def context_parallel_prefill(
    model: torch.nn.Module,
    input_ids: torch.LongTensor,
    *,
    question_match: torch.LongTensor | None = None,
    segment_len: int = 32768,
    group: ProcessGroup | None = None,
) -> ContextParallelOutput:
    """Read `input_ids` [B, T] (the same on every rank) over the ranks of `group`, slice by slice.

    Args:
        model: a GDN-2 network on this rank's device (`GDN2ForReader`, `GDN2ForCausalLM`, `GDN2Model`;
            hybrid window-attention layers pass their window along too).
        input_ids: [B, T] tokens; every rank passes the whole tensor and reads its own slice.
        question_match: the reader's [B, T] feature, sliced the same way.
        segment_len: tokens per forward call inside a rank's slice (peak memory).
        group: the ranks to spread over (default: all).

    Returns:
        `ContextParallelOutput`; raises ValueError on a malformed input.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be [batch, tokens] with tokens >= 1, got {tuple(input_ids.shape)}")
    if question_match is not None and question_match.shape != input_ids.shape:
        raise ValueError(
            f"question_match {tuple(question_match.shape)} must match input_ids {tuple(input_ids.shape)}"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    device = input_ids.device
    bounds = slice_bounds(input_ids.shape[1], world)
    lo, hi = bounds[rank], bounds[rank + 1]
    cache = recv_cache(rank - 1, device, group) if rank > 0 else GDN2Cache(model.config.num_hidden_layers)
    start = end = None
    if hi > lo:
        match = None if question_match is None else question_match[:, lo:hi]
        out = streaming_prefill(
            model, input_ids[:, lo:hi], segment_len, past_key_values=cache, question_match=match
        )
        cache = out.cache
        start, end = getattr(out, "start_logits", None), getattr(out, "end_logits", None)
    if rank < world - 1:
        send_cache(cache, rank + 1, group)
    if start is None and hasattr(model, "qa_outputs"):
        # a rank whose slice is empty (fewer tokens than ranks) still joins the gather
        start = end = torch.zeros(input_ids.shape[0], 0, device=device)
    if start is not None:
        start = gather_rows(start.float(), bounds, group)
        end = gather_rows(end.float(), bounds, group)
    return ContextParallelOutput(start, end, cache if rank == world - 1 else None)


def context_parallel_extract(
    reader,
    question: str,
    pieces: list[ContextPiece],
    *,
    k: int = 1,
    max_answer_tokens: int = 32,
    segment_len: int = 32768,
    two_pass: bool = False,
    group: ProcessGroup | None = None,
):
    """`Reader.extract_spans` with the context read across the ranks of `group`; same spans on every rank.

    Every rank lays out the same input (`build_reader_input`), reads its slice (handed the cache by the
    rank before it, or all at once with `two_pass`: `two_pass_prefill`), and scores spans on the gathered
    logits (`best_spans`), so the answer is the one-device answer.
    """
    from gdn2_model.reader import best_spans

    if max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
    ri = build_reader_input(reader.tokenizer, question, pieces)
    if not bool(ri.answer_mask().any()):
        return []
    ids = torch.from_numpy(ri.input_ids).to(reader.device)[None]
    match = None if ri.question_match is None else torch.from_numpy(ri.question_match).to(reader.device)[None]
    if two_pass:
        from gdn2_model.distributed.two_pass import two_pass_prefill

        out = two_pass_prefill(reader.net, ids, question_match=match, group=group)
    else:
        out = context_parallel_prefill(
            reader.net, ids, question_match=match, segment_len=segment_len, group=group
        )
    start, end = out.start_logits[0].cpu(), out.end_logits[0].cpu()
    if getattr(reader.net.config, "reader_end_shift", False):
        end = align_end_logits(end)
    return best_spans(ri, pieces, start, end, k=k, max_len=max_answer_tokens)
