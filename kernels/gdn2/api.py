"""Public entry points: validate, then dispatch (Triton on CUDA, the reference elsewhere)."""

from __future__ import annotations

import torch

from kernels.gdn2.reference import recurrent_gdn2


def gdn2(
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GDN-2 over whole sequences. Placeholder dispatch: the reference recurrence only (issue 3 builds the rest)."""
    if cu_seqlens is not None:
        raise NotImplementedError("cu_seqlens: not built yet (issue 3)")
    return recurrent_gdn2(
        q, k, v, g, b, w, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, l2norm_qk=l2norm_qk,
    )


def gdn2_step(q, k, v, g, b, w, state, *, scale=None, l2norm_qk=True):
    """Decode T tokens (often 1) from `state` [B, H, K, V] float32, updating it in place."""
    o, new_state = recurrent_gdn2(
        q, k, v, g, b, w, scale=scale, initial_state=state, output_final_state=True, l2norm_qk=l2norm_qk
    )
    state.copy_(new_state)
    return o, state
