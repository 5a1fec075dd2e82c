"""Backward of the chunkwise GDN-2.

Gradients for q, k, v, g, b, w and the initial state. This version recomputes the forward with the
differentiable chunked PyTorch reference and lets autograd run it backwards: exact, but not fast.
"""

from __future__ import annotations

import torch

from kernels.common.chunks import ChunkTable
from kernels.gdn2.reference import chunk_gdn2 as torch_chunk_gdn2


def chunk_gdn2_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    h0: torch.Tensor | None,
    *,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    scale: float,
    table: ChunkTable,
    l2norm_qk: bool,
    cu_seqlens: torch.Tensor | None,
    chunk_size: int,
) -> tuple[torch.Tensor, ...]:
    """Flat [tokens, H, *] inputs and output grad; returns (dq, dk, dv, dg, db, dw, dh0 or None)."""
    N = table.num_seqs
    Ttot, H, _ = q.shape
    T = Ttot // N if cu_seqlens is None else Ttot
    B = N if cu_seqlens is None else 1
    with torch.enable_grad():
        xs = [x.detach().view(B, T, H, x.shape[-1]).requires_grad_() for x in (q, k, v, g, b, w)]
        s0 = None if h0 is None else h0.detach().requires_grad_()
        o, ht = torch_chunk_gdn2(
            *xs,
            scale=scale,
            initial_state=s0,
            output_final_state=dht is not None,
            cu_seqlens=cu_seqlens,
            l2norm_qk=l2norm_qk,
            chunk_size=chunk_size,
        )
        outs, grads_out = [o], [do.view_as(o).to(o.dtype)]
        if dht is not None:
            outs.append(ht)
            grads_out.append(dht)
        inputs = xs + ([s0] if s0 is not None else [])
        grads = torch.autograd.grad(outs, inputs, grads_out, allow_unused=True)
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads, strict=True)]
    dh0 = grads[6] if s0 is not None else None
    return (*(gr.reshape(Ttot, H, -1) for gr in grads[:6]), dh0)
