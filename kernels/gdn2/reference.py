"""Token-by-token GDN-2 recurrence in PyTorch: the definition, the oracle, the CPU path.

Per head, state S in R^{K x V}:
    decay:   S <- Diag(exp g_t) S
    erase:   e  = S^T (b_t * k_t)
    write:   S <- S + k_t (w_t * v_t - e)^T
    read:    o_t = S^T (scale * q_t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def recurrent_gdn2(
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
    l2norm_qk: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loop over time; differentiable. Computes in float32 (float64 if any input is float64).

    Shapes: q, k, b, g [B, T, H, K]; v, w [B, T, H, V]; initial_state [B, H, K, V].
    Returns o [B, T, H, V] in v's dtype and the final state (float32/64) when asked.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = torch.float64 if torch.float64 in (q.dtype, k.dtype, v.dtype, g.dtype) else torch.float32
    q, k, v, g, b, w = (x.to(dtype) for x in (q, k, v, g, b, w))
    if l2norm_qk:
        q = F.normalize(q, dim=-1, eps=1e-6)
        k = F.normalize(k, dim=-1, eps=1e-6)
    scale = K**-0.5 if scale is None else scale
    if initial_state is None:
        S = q.new_zeros(B, H, K, V)
    else:
        S = initial_state.to(dtype)
    outs = []
    for t in range(T):
        q_t, k_t, v_t = q[:, t], k[:, t], v[:, t]  # [B, H, K], [B, H, K], [B, H, V]
        # decay each key channel of the state
        S = S * g[:, t].exp().unsqueeze(-1)  # [B, H, K, V]
        # what the erase-gated key reads back from the decayed state
        e = torch.einsum("bhkv,bhk->bhv", S, b[:, t] * k_t)  # [B, H, V]
        # write the gated value minus what was erased
        S = S + k_t.unsqueeze(-1) * (w[:, t] * v_t - e).unsqueeze(-2)  # [B, H, K, V]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q_t * scale))  # [B, H, V]
    o = torch.stack(outs, dim=1) if T > 0 else v.new_zeros(B, 0, H, V)
    return o.to(v.dtype if v.dtype != torch.float64 else dtype), (S if output_final_state else None)
