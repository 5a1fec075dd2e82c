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
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
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


def _decayed_scores(
    x: torch.Tensor, k: torch.Tensor, gam: torch.Tensor, sub: int, strict: bool
) -> torch.Tensor:
    """M_ij = sum_c x_ic exp(gam_ic - gam_jc) k_jc over j < i (strict) or j <= i, without overflow.

    x, k, gam: [..., C, K] with gam the within-chunk cumulative log-decay (non-increasing when g <= 0).
    Off-diagonal sub-chunk blocks factor through r_I, the cumulative decay just before row sub-chunk I:
    exp(gam_i - r_I) <= 1 and exp(r_I - gam_j) <= 1 for j before the block, so no factor can overflow.
    Diagonal sub-chunk blocks use the pairwise differences directly (masked before exp).
    """
    C = x.shape[-2]
    n = C // sub
    mask = torch.ones(sub, sub, dtype=torch.bool, device=x.device).tril(-1 if strict else 0)
    rows = []
    for i in range(n):
        lo, hi = i * sub, (i + 1) * sub
        x_i, k_i, g_i = x[..., lo:hi, :], k[..., lo:hi, :], gam[..., lo:hi, :]  # [..., S, K]
        parts = []
        if lo > 0:
            r = gam[..., lo - 1 : lo, :]  # [..., 1, K]
            left = (x_i * (g_i - r).exp()) @ (k[..., :lo, :] * (r - gam[..., :lo, :]).exp()).transpose(-1, -2)
            parts.append(left)  # [..., S, lo]
        # pairwise decay inside the sub-chunk; masked entries are zeroed before exp so they cannot overflow
        diff = (g_i.unsqueeze(-2) - g_i.unsqueeze(-3)).masked_fill(~mask.unsqueeze(-1), 0.0)  # [..., S, S, K]
        diag = torch.einsum("...ic,...ijc,...jc->...ij", x_i, diff.exp(), k_i) * mask
        parts.append(diag)
        if hi < C:
            parts.append(x.new_zeros(*x.shape[:-2], sub, C - hi))
        rows.append(torch.cat(parts, dim=-1))
    return torch.cat(rows, dim=-2)  # [..., C, C]


def _chunk_pass(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    S: torch.Tensor,
    scale: float,
    chunk_size: int,
    sub_chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """WY/UT chunked pass over [B, T, H, *] inputs already normalised and upcast; returns (o, final S)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    pad = (-T) % C
    if pad:
        # zero tokens (k = 0, g = 0) leave the state untouched, so padding the tail is exact
        q, k, v, g, b, w = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v, g, b, w))
    NT = (T + pad) // C
    if NT == 0:
        # an empty sequence (T = 0, or an empty slot of cu_seqlens) passes its state through
        return q.new_zeros(B, 0, H, V), S

    def chunks(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(B, NT, C, H, x.shape[-1]).permute(1, 0, 3, 2, 4)  # [NT, B, H, C, *]

    q, k, v, g, b, w = (chunks(x) for x in (q, k, v, g, b, w))
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    outs = []
    for c in range(NT):
        q_c, k_c, b_c = q[c], k[c], b[c]  # [B, H, C, K]
        gam = g[c].cumsum(-2)  # [B, H, C, K]
        e_gam = gam.exp()
        # L_ij = (b_i*k_i*e^{gam_i}) . (k_j*e^{-gam_j}), j < i
        L = _decayed_scores(b_c * k_c, k_c, gam, sub_chunk, strict=True)  # [B, H, C, C]
        # (I + L) U = W*V - (B*K*e^Gam) S0
        rhs = w[c] * v[c] - (b_c * k_c * e_gam) @ S  # [B, H, C, V]
        U = torch.linalg.solve_triangular(eye + L, rhs, upper=False, unitriangular=True)  # [B, H, C, V]
        P = _decayed_scores(q_c, k_c, gam, sub_chunk, strict=False)  # [B, H, C, C]
        outs.append(((q_c * e_gam) @ S + P @ U) * scale)  # [B, H, C, V]
        g_end = gam[..., -1:, :]  # [B, H, 1, K]
        S = g_end.transpose(-1, -2).exp() * S + (k_c * (g_end - gam).exp()).transpose(-1, -2) @ U
    o = torch.stack(outs, dim=0).permute(1, 0, 3, 2, 4).reshape(B, NT * C, H, V)
    return o[:, :T], S


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
    chunk_size: int = 64,
    sub_chunk: int = 16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise (WY/UT) GDN-2 in PyTorch: same maths and signature as `recurrent_gdn2`, plus varlen.

    Only the chunk-to-chunk state pass loops; inside a chunk everything is matrix products and one
    unit-lower-triangular solve. Differentiable; float32 compute (float64 if any of q, k, v, g is).
    With `cu_seqlens` ([N+1], B == 1) each packed sequence runs from its own initial state
    (`initial_state` [N, H, K, V]) and the final state is [N, H, K, V].
    """
    if chunk_size % sub_chunk:
        raise ValueError(f"chunk_size={chunk_size} must be a multiple of sub_chunk={sub_chunk}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = torch.float64 if torch.float64 in (q.dtype, k.dtype, v.dtype, g.dtype) else torch.float32
    out_dtype = dtype if v.dtype == torch.float64 else v.dtype
    q, k, v, g, b, w = (x.to(dtype) for x in (q, k, v, g, b, w))
    if l2norm_qk:
        q = F.normalize(q, dim=-1, eps=1e-6)
        k = F.normalize(k, dim=-1, eps=1e-6)
    scale = K**-0.5 if scale is None else scale
    if cu_seqlens is None:
        bounds = [(None, 0, T)]
    else:
        offs = [int(x) for x in cu_seqlens.tolist()]
        bounds = list(enumerate(zip(offs[:-1], offs[1:], strict=True)))
        bounds = [(n, s, e) for n, (s, e) in bounds]
    outs, finals = [], []
    for n, s, e in bounds:
        rows = slice(None) if n is None else slice(n, n + 1)
        N = B if n is None else 1
        S0 = q.new_zeros(N, H, K, V) if initial_state is None else initial_state[rows].to(dtype)
        o, S = _chunk_pass(
            q[:, s:e], k[:, s:e], v[:, s:e], g[:, s:e], b[:, s:e], w[:, s:e], S0, scale, chunk_size, sub_chunk
        )
        outs.append(o)
        finals.append(S)
    o = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    final = torch.cat(finals, dim=0) if len(finals) > 1 else finals[0]
    return o.to(out_dtype), (final if output_final_state else None)
