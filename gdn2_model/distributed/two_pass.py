"""Context-parallel reading in two passes: every rank reads its slice at once, then the states are combined.

The hand-off (`context.py`) makes rank r wait for rank r-1. But a GDN-2 layer's state update is affine in
the state (DESIGN.md §2): per token `S_t = A_t S_{t-1} + k_t (w_t ⊙ v_t)ᵀ` with
`A_t = (I - k_t (b_t ⊙ k_t)ᵀ) Diag(exp g_t)` [K x K]. Over a slice that composes to
`S_end = M S_in + N`, and each output is `o_t = o_t⁰ + S_inᵀ p_t` with `o⁰` the output from a zero state and
`p_t = (A_t ... A_1)ᵀ q_t · scale`. So per GDN-2 layer, all ranks at once:

1. conv tails: all-gather the last `conv_size - 1` inputs of the block; rank r takes rank r-1's, projects
   them (q/k/v projections) and reads its slice with them as the conv cache;
2. pass 1: `gdn2` from a zero state gives `o⁰` and `N`; pass 2: `gdn2` with `v = 0` from the identity
   state (V = K) gives `p` and `M`;
3. all-gather every rank's (M, N), and each rank composes `S_in(r) = M_{r-1} S_in(r-1) + N_{r-1}`;
4. `o = o⁰ + p S_in(r)`, and the state after the slice is `M S_in(r) + N`.

The next layer then runs on exact inputs, so the result equals one-device reading (tested), at about
1/world of the time plus one extra `gdn2` pass per layer and two small all-gathers per layer. Pure GDN-2
stacks only (a window-attention layer would need its window from the previous rank), and each rank reads
its slice in one forward call (memory grows with the slice, unlike the hand-off's segments).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from gdn2_kernels import gdn2
from gdn2_model.cache import GDN2Cache, RecurrentLayerState
from gdn2_model.distributed.comm import gather_rows, slice_bounds
from gdn2_model.distributed.context import ContextParallelOutput
from gdn2_model.layer import GatedDeltaNet2

__all__ = ["TwoPassRecurrence", "two_pass_prefill"]


def _all_gather(x: torch.Tensor, group: ProcessGroup | None) -> list[torch.Tensor]:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return parts


class TwoPassRecurrence:
    """A stand-in for `gdn2` (same signature) that returns what the slice gives after the ranks before it.

    Installed as `GatedDeltaNet2.recurrence` for one call of `two_pass_prefill`; every rank calls it for
    the same layers in the same order (it runs collectives).
    """

    def __init__(self, group: ProcessGroup | None = None) -> None:
        self.group = group

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        b: torch.Tensor,
        w: torch.Tensor,
        *,
        initial_state: torch.Tensor | None = None,
        output_final_state: bool = False,
        cu_seqlens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if initial_state is not None or cu_seqlens is not None:
            raise ValueError("the two-pass recurrence starts every slice from its rank's own zero state")
        B, _, H, K = q.shape
        # pass 1: the slice's own contribution N and its outputs from a zero state
        o, n = gdn2(q, k, v, g, b, w, output_final_state=True)  # [B, T, H, V], [B, H, K, V]
        # pass 2: with no values written the state only moves by the transition: from I it ends at M,
        # and its outputs are p_t = M_{<=t}^T q_t * scale
        eye = torch.eye(K, device=q.device, dtype=torch.float32).expand(B, H, K, K).contiguous()
        zeros = q.new_zeros(q.shape, dtype=v.dtype)
        # p [B, T, H, K], m [B, H, K, K]
        p, m = gdn2(q, k, zeros, g, b, zeros, initial_state=eye, output_final_state=True)
        rank = dist.get_rank(self.group)
        ms, ns = _all_gather(m, self.group), _all_gather(n, self.group)
        s_in = torch.zeros_like(n)
        for r in range(rank):
            s_in = ms[r] @ s_in + ns[r]
        o = o + torch.einsum("bthk,bhkv->bthv", p.float(), s_in).to(o.dtype)
        return o, (m @ s_in + n) if output_final_state else None


def _conv_tails(block, hidden: torch.Tensor, group: ProcessGroup | None):
    """The previous rank's last conv inputs of this block's mixer (None on rank 0): the conv cache."""
    mixer: GatedDeltaNet2 = block.attn
    if not mixer.use_short_conv:
        return None
    width = mixer.q_conv1d.kernel_size - 1
    tails = _all_gather(hidden[:, -width:], group)
    rank = dist.get_rank(group)
    if rank == 0:
        return None
    x = block.attn_norm(tails[rank - 1])
    return (mixer.q_proj(x), mixer.k_proj(x), mixer.v_proj(x))


@contextmanager
def _installed(model: torch.nn.Module, group: ProcessGroup | None, cache: GDN2Cache):
    """Two-pass recurrences in every mixer and a pre-hook per block that puts the conv tails in `cache`."""
    recurrence = TwoPassRecurrence(group)
    handles, mixers = [], []
    for block in model.base_model.layers:

        def pre_hook(block, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            conv = _conv_tails(block, hidden, group)
            cache[block.layer_idx] = RecurrentLayerState(recurrent_state=None, conv_state=conv)

        handles.append(block.register_forward_pre_hook(pre_hook, with_kwargs=True))
        mixers.append(block.attn)
        block.attn.recurrence = recurrence
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for mixer in mixers:
            mixer.recurrence = gdn2


@torch.no_grad()
def two_pass_prefill(
    model: torch.nn.Module,
    input_ids: torch.LongTensor,
    *,
    question_match: torch.LongTensor | None = None,
    group: ProcessGroup | None = None,
) -> ContextParallelOutput:
    """`context_parallel_prefill`'s result with all ranks reading at once (pure GDN-2 models).

    Raises ValueError for a model with attention layers, or a slice shorter than the conv width.
    """
    if not all(isinstance(block.attn, GatedDeltaNet2) for block in model.base_model.layers):
        raise ValueError("two-pass context parallelism needs a pure GDN-2 model (no attention layers)")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, tokens], got {tuple(input_ids.shape)}")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    bounds = slice_bounds(input_ids.shape[1], world)
    width = model.config.conv_size - 1
    if bounds[-1] - bounds[-2] < max(1, width):
        raise ValueError(
            f"{input_ids.shape[1]} tokens over {world} ranks leave slices shorter than the conv width {width}"
        )
    lo, hi = bounds[rank], bounds[rank + 1]
    cache = GDN2Cache(model.config.num_hidden_layers)
    cache.seen_tokens = lo
    extra = {} if question_match is None else {"question_match": question_match[:, lo:hi]}
    with _installed(model, group, cache):
        out = model(input_ids=input_ids[:, lo:hi], past_key_values=cache, use_cache=True, **extra)
    start = getattr(out, "start_logits", None)
    end = getattr(out, "end_logits", None)
    if start is not None:
        start, end = gather_rows(start.float(), bounds, group), gather_rows(end.float(), bounds, group)
    return ContextParallelOutput(start, end, out.cache if rank == world - 1 else None)
