"""CUDA entry points of GDN-2 on Triton: the chunkwise autograd Function and the decode step.

    S_t = (I - k_t (b_t*k_t)^T) Diag(exp g_t) S_{t-1} + k_t (w_t*v_t)^T,    o_t = S_t^T (scale * q_t)

`chunk_fwd.py` runs the forward (kernels in `chunk_intra.py`, `chunk_wy.py`, `chunk_state.py`),
`chunk_bwd.py` the backward, `fused_recurrent.py` the decode kernel; `tuning.py` holds their launch
settings. Inputs arrive validated from `api.py`.
"""

from __future__ import annotations

import torch

from gdn2_kernels.common.chunks import build_chunk_table
from gdn2_kernels.gdn2.chunk_bwd import chunk_gdn2_bwd
from gdn2_kernels.gdn2.chunk_fwd import chunk_gdn2_fwd
from gdn2_kernels.gdn2.fused_recurrent import fused_recurrent_gdn2_step
from gdn2_kernels.gdn2.tuning import Tuning, tuning_for

CHUNK_SIZE = 64
_HEAD_DIMS = (16, 32, 64, 128)


def supports(q: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the Triton kernels cover these sizes and dtypes (else the caller uses the reference)."""
    return q.shape[-1] in _HEAD_DIMS and v.shape[-1] in _HEAD_DIMS and torch.float64 not in (q.dtype, v.dtype)


class ChunkGDN2Function(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, q, k, v, g, b, w, initial_state, scale, output_final_state, cu_seqlens, l2norm_qk, tuning
    ):
        B, T, H, K = q.shape
        V = v.shape[-1]
        flat = [x.reshape(B * T, H, x.shape[-1]).contiguous() for x in (q, k, v, g, b, w)]
        flat[3] = flat[3].float()
        h0 = None if initial_state is None else initial_state.float().contiguous()
        table = build_chunk_table(B, T, CHUNK_SIZE, q.device, cu_seqlens)
        if tuning is None:
            tuning = tuning_for(q.device, table.num_seqs, table.num_chunks, H)
        keep = any(ctx.needs_input_grad)
        o, ht, it = chunk_gdn2_fwd(
            *flat,
            scale=scale,
            initial_state=h0,
            output_final_state=output_final_state,
            table=table,
            l2norm_qk=l2norm_qk,
            chunk_size=CHUNK_SIZE,
            keep_inverse=keep,
            tuning=tuning,
        )
        # A and P (C x C per chunk and head, 0.6 GB at 100k tokens and 16 heads) and the inverse norms spare
        # the backward the scores step and the inversion; the rest is recomputed
        saved = ("A", "P", "rk", "rq")
        scores = [it[name] if keep else None for name in saved]
        ctx.save_for_backward(*flat, h0, *scores)
        ctx.table = table
        ctx.tuning = tuning
        ctx.shape = (B, T, H, K, V)
        ctx.scale, ctx.l2norm_qk = scale, l2norm_qk
        ctx.h0_dtype = None if initial_state is None else initial_state.dtype
        ctx.dtypes = [x.dtype for x in (q, k, v, g, b, w)]
        return o.view(B, T, H, V), ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, b, w, h0, *scores = ctx.saved_tensors
        B, T, H, K, V = ctx.shape
        grads = chunk_gdn2_bwd(
            q, k, v, g, b, w, h0,
            do=do.reshape(B * T, H, V).contiguous(),
            dht=None if dht is None else dht.contiguous(),
            scale=ctx.scale,
            table=ctx.table,
            l2norm_qk=ctx.l2norm_qk,
            chunk_size=CHUNK_SIZE,
            scores=tuple(scores),
            tuning=ctx.tuning,
        )  # fmt: skip
        dq, dk, dv, dg, db, dw, dh0 = grads
        out = [
            x.view(B, T, H, x.shape[-1]).to(dt)
            for x, dt in zip((dq, dk, dv, dg, db, dw), ctx.dtypes, strict=True)
        ]
        dh0 = None if ctx.h0_dtype is None else dh0.to(ctx.h0_dtype)
        return (
            *out,
            dh0,
            None,  # scale
            None,  # output_final_state
            None,  # cu_seqlens
            None,  # l2norm_qk
            None,  # tuning
        )


def chunk_gdn2(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    l2norm_qk: bool = True,
    tuning: Tuning | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton GDN-2 over [B, T, H, *] CUDA tensors; same contract as `gdn2_kernels.gdn2`. `tuning`: launch
    settings (None: the row of `tuning.TABLE` for this device and shape)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else float(scale)
    if T == 0:
        N = B if cu_seqlens is None else cu_seqlens.numel() - 1
        # the state passes through unchanged, in its own dtype as after a non-empty pass
        final = (
            initial_state.clone()
            if initial_state is not None
            else q.new_zeros(N, H, K, V, dtype=torch.float32)
        )
        return v.new_zeros(B, 0, H, V), (final if output_final_state else None)
    o, ht = ChunkGDN2Function.apply(
        q, k, v, g, b, w, initial_state, scale, output_final_state, cu_seqlens, l2norm_qk, tuning
    )
    if ht is not None and initial_state is not None and initial_state.dtype != ht.dtype:
        ht = ht.to(initial_state.dtype)
    return o, ht


def gdn2_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float | None = None,
    l2norm_qk: bool = True,
    tuning: Tuning | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode with the fused recurrent kernel; `state` [B, H, K, V] float32 is updated in place."""
    B, _, H, K = q.shape
    if tuning is None:
        tuning = tuning_for(q.device, B, 0, H)
    scale = K**-0.5 if scale is None else float(scale)
    # the kernel updates a float32 contiguous state in place; anything else goes through a copy
    work = state if state.dtype == torch.float32 and state.is_contiguous() else state.float().contiguous()
    o = fused_recurrent_gdn2_step(
        *(x.contiguous() for x in (q, k, v, g, b, w)),
        work,
        scale=scale,
        l2norm_qk=l2norm_qk,
        block_v=tuning.decode_block_v,
        num_warps=tuning.decode_warps,
    )
    if work is not state:
        state.copy_(work)
    return o, state
