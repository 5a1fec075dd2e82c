"""The Gated DeltaNet-2 token mixer (DESIGN.md §2), parameter-compatible with FLA's `GatedDeltaNet2`.

    q, k, v = SiLU(causal depthwise conv(W_q x)), ...          (width 4; SiLU alone when convs are off)
    g = -exp(A_log_h) * softplus(f(x) + dt_bias)                (f: hidden -> head_v_dim -> key_dim)
    b = sigmoid(W_b x)  (x2 with allow_neg_eigval),  w = sigmoid(W_w x)
    o, S = gdn2(q, k, v, g, b, w)                               (gdn2_kernels/ alone computes the recurrence)
    out = o_proj(RMSNorm(o) * act(g_proj(x)))                   (act: sigmoid as FLA, swish as the paper)

Parameter names and shapes equal FLA's layer (`q_proj`, `q_conv1d.weight` [D, 1, W], `f_proj.0/1`, `b_proj`,
`w_proj`, `A_log`, `dt_bias`, `g_proj.0/1`, `o_norm.weight`, `o_proj`), so its state dict loads as is.
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from gdn2_kernels import gdn2, gdn2_step
from gdn2_kernels.common.chunks import per_tensor_memo
from gdn2_model.cache import GDN2Cache, RecurrentLayerState

logger = logging.getLogger(__name__)

__all__ = [
    "GatedDeltaNet2",
    "RMSNorm",
    "RMSNormGated",
    "ShortConvolution",
    "decay_init",
    "positions_in_sequence",
    "use_fused_ops",
]


@per_tensor_memo
def positions_in_sequence(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Index of each packed token inside its own sequence, [total] int64 (once per forward: remembered
    for the `cu_seqlens` tensor that every layer's convs share)."""
    cu = cu_seqlens.to(torch.long)
    lengths = cu[1:] - cu[:-1]
    starts = torch.repeat_interleave(cu[:-1], lengths, output_size=total)
    return torch.arange(total, device=cu.device) - starts


def decay_init(A_log: torch.Tensor, dt_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-style `A_log` [H] and `dt_bias` [H*K]: A in U(1, 16), softplus(dt_bias) in [1e-3, 0.1].

    dt is log-uniform; `dt_bias` is its inverse softplus. Keeps every channel's per-token decay
    `exp(g) = exp(-A * dt)` within roughly [0.2, 0.999] at init, so the state neither explodes nor
    forgets everything before training has shaped the gates.
    """
    A = torch.empty_like(A_log).uniform_(1, 16)
    dt = torch.exp(torch.rand_like(dt_bias) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(
        min=1e-4
    )
    return A.log(), dt + torch.log(-torch.expm1(-dt))


class RMSNorm(nn.Module):
    """RMSNorm through `F.rms_norm` (one fused kernel on CUDA, accumulating in float32)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


@functools.cache
def _layer_ops_importable() -> bool:
    try:
        import gdn2_kernels.layer_ops  # noqa: F401
    except ImportError as err:  # Triton missing or broken: the PyTorch ops still work on CUDA
        logger.warning("fused layer kernels unavailable (%s); using the PyTorch ops", err)
        return False
    return True


def use_fused_ops(enabled: bool, x: torch.Tensor) -> bool:
    """Whether a module runs its fused Triton kernel (`gdn2_kernels.layer_ops`) instead of its PyTorch ops.

    Only in CUDA inference (the kernels have no backward, and the CPU has no Triton), and only where Triton
    imports.
    """
    return enabled and x.is_cuda and not torch.is_grad_enabled() and _layer_ops_importable()


class RMSNormGated(nn.Module):
    """`RMSNorm(o) * act(gate)` per head: the output gate of the mixer (FLA's FusedRMSNormGated math)."""

    def __init__(
        self, hidden_size: int, activation: str = "sigmoid", eps: float = 1e-6, fused_ops: bool = True
    ) -> None:
        super().__init__()
        self.eps = eps
        self.activation = activation
        self.fused_ops = fused_ops
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        if use_fused_ops(self.fused_ops, x):
            from gdn2_kernels.layer_ops import rms_norm_gated

            return rms_norm_gated(x, gate, self.weight, self.eps, self.activation)
        y = F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)
        gate = gate.to(y.dtype)
        return y * (torch.sigmoid(gate) if self.activation == "sigmoid" else F.silu(gate))


class ShortConvolution(nn.Module):
    """Causal depthwise conv + SiLU over [B, T, D]; weight [D, 1, W] as `nn.Conv1d(groups=D)` stores it.

    The cache holds the last W-1 *inputs* [B, W-1, D], so a continuation sees exactly the left context a
    single pass would have. Packed sequences (`cu_seqlens`) never see across their boundaries.
    """

    def __init__(
        self, hidden_size: int, kernel_size: int, bias: bool = False, fused_ops: bool = True
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.fused_ops = fused_ops
        self.weight = nn.Parameter(torch.empty(hidden_size, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(
        self,
        x: torch.Tensor,
        cache: torch.Tensor | None = None,
        output_final_state: bool = False,
        cu_seqlens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        W = self.kernel_size
        B, T, D = x.shape
        if cu_seqlens is not None:
            pos = positions_in_sequence(cu_seqlens.to(x.device), T)
            if use_fused_ops(self.fused_ops, x):
                from gdn2_kernels.layer_ops import causal_conv1d_silu

                return causal_conv1d_silu(x, self.weight[:, 0], self.bias, None, positions=pos), None
            return F.silu(self._packed(x, pos)), None
        if use_fused_ops(self.fused_ops, x):
            from gdn2_kernels.layer_ops import causal_conv1d_silu

            y = causal_conv1d_silu(x, self.weight[:, 0], self.bias, cache)
        else:
            y = F.silu(self._shift_and_add(x, cache))
        new_cache = None
        if output_final_state:
            if T >= W - 1:
                tail = x[:, T - (W - 1) :]
            else:
                prefix = cache.to(x.dtype) if cache is not None else x.new_zeros(B, W - 1, D)
                tail = torch.cat([prefix[:, T:], x], dim=1)
            if cache is not None and cache.dtype == x.dtype and not torch.is_grad_enabled():
                # in place, so a captured decode step (CUDA graph) keeps reading the same buffer
                new_cache = cache.copy_(tail)
            else:
                new_cache = tail.clone()
        return y, new_cache

    def _shift_and_add(self, x: torch.Tensor, cache: torch.Tensor | None) -> torch.Tensor:
        """The conv before SiLU on the [B, T, D] layout: no transposes around a channels-first conv."""
        W, T = self.kernel_size, x.shape[1]
        weight = self.weight.to(x.dtype)[:, 0]  # [D, W]
        y = x * weight[:, W - 1]
        for s in range(1, W):
            if s < T:
                y[:, s:].addcmul_(x[:, : T - s], weight[:, W - 1 - s])
            if cache is not None:
                # the first s outputs reach back into the cached inputs of the previous call
                n = min(s, T)
                y[:, :n].addcmul_(cache[:, W - 1 - s : W - 1 - s + n].to(x.dtype), weight[:, W - 1 - s])
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y

    def _packed(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Sum of shifted copies, each masked where the shift would cross into the previous sequence
        (`pos`: each token's index in its own sequence)."""
        W, T = self.kernel_size, x.shape[1]
        weight = self.weight.to(x.dtype)[:, 0]  # [D, W]
        y = x * weight[:, W - 1]
        for s in range(1, W):
            shifted = F.pad(x, (0, 0, s, 0))[:, :T]  # x[t - s]
            y = y + shifted * (pos >= s).to(x.dtype)[None, :, None] * weight[:, W - 1 - s]
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y


class GatedDeltaNet2(nn.Module):
    """GDN-2 mixer taking plain kwargs (the block builds it from the config).

    Args:
        hidden_size (int): model width.
        head_dim (int): key dim K per head.
        num_heads (int): q/k heads.
        num_v_heads (int, Optional): value heads; q/k/g/b are repeated to match. Default: `num_heads`.
        expand_v (float): V = head_dim * expand_v.
        use_short_conv (bool), conv_size (int), conv_bias (bool): the q/k/v convs.
        allow_neg_eigval (bool): erase gate in [0, 2].
        gate_act (str): "sigmoid" or "swish"/"silu" output gate.
        norm_eps (float): epsilon of the gated RMSNorm.
        fused_ops (bool): fused Triton kernels for the convs, decay gate and gated norm in CUDA inference.
        layer_idx (int): slot in the cache.
    """

    def __init__(
        self,
        hidden_size: int = 2048,
        head_dim: int = 128,
        num_heads: int = 16,
        num_v_heads: int | None = None,
        expand_v: float = 1.0,
        use_short_conv: bool = True,
        conv_size: int = 4,
        conv_bias: bool = False,
        allow_neg_eigval: bool = False,
        gate_act: str = "sigmoid",
        norm_eps: float = 1e-6,
        fused_ops: bool = True,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_v_heads = num_v_heads if num_v_heads is not None else num_heads
        if self.num_v_heads % num_heads:
            raise ValueError(f"num_v_heads={self.num_v_heads} must be a multiple of num_heads={num_heads}")
        self.head_k_dim = head_dim
        self.head_v_dim = int(round(head_dim * expand_v))
        if not math.isclose(head_dim * expand_v, self.head_v_dim, abs_tol=1e-6) or self.head_v_dim < 1:
            raise ValueError(f"expand_v={expand_v} times head_dim={head_dim} is not a positive integer")
        self.key_dim = num_heads * head_dim
        self.value_dim = self.num_v_heads * self.head_v_dim
        self.use_short_conv = use_short_conv
        self.allow_neg_eigval = allow_neg_eigval
        self.layer_idx = layer_idx
        self.fused_ops = fused_ops

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        if use_short_conv:
            self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, fused_ops=fused_ops)
            self.k_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, fused_ops=fused_ops)
            self.v_conv1d = ShortConvolution(self.value_dim, conv_size, bias=conv_bias, fused_ops=fused_ops)
        # low-rank decay projection through head_v_dim (as FLA and the paper's reference)
        self.f_proj = nn.Sequential(
            nn.Linear(hidden_size, self.head_v_dim, bias=False),
            nn.Linear(self.head_v_dim, self.key_dim, bias=False),
        )
        self.b_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.w_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.A_log = nn.Parameter(torch.empty(num_heads, dtype=torch.float32))
        self.dt_bias = nn.Parameter(torch.empty(self.key_dim, dtype=torch.float32))
        self.A_log._no_weight_decay = True
        self.dt_bias._no_weight_decay = True
        self.g_proj = nn.Sequential(
            nn.Linear(hidden_size, self.head_v_dim, bias=False),
            nn.Linear(self.head_v_dim, self.value_dim, bias=True),
        )
        self.o_norm = RMSNormGated(self.head_v_dim, activation=gate_act, eps=norm_eps, fused_ops=fused_ops)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        # the whole-sequence recurrence: `gdn2`, or an op with its signature that a caller installs for a
        # while (the context-parallel two-pass reading, `gdn2_model/distributed/two_pass.py`)
        self.recurrence = gdn2
        self.reset_decay_parameters()

    @torch.no_grad()
    def reset_decay_parameters(self) -> None:
        """Draw `A_log` and `dt_bias` afresh with `decay_init` (also what `_init_weights` uses)."""
        A_log, dt_bias = decay_init(self.A_log, self.dt_bias)
        self.A_log.copy_(A_log)
        self.dt_bias.copy_(dt_bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: GDN2Cache | None = None,
        use_cache: bool = False,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mix [B, T, hidden] -> [B, T, hidden]; with `use_cache`, writes this layer's state into `cache`.

        `attention_mask` [B, T_total] marks left padding: padded inputs and keys are zeroed, which leaves the
        state exactly zero through them, so a left-padded row equals the same row run alone.
        """
        B, T, _ = hidden_states.shape
        x = hidden_states
        if attention_mask is not None:
            x = x * attention_mask[:, -T:, None].to(x.dtype)
        last = cache[self.layer_idx] if cache is not None else None
        conv_state = last.conv_state if last is not None and last.conv_state is not None else (None,) * 3

        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        new_conv = None
        if self.use_short_conv:
            q, cq = self.q_conv1d(q, conv_state[0], use_cache, cu_seqlens)
            k, ck = self.k_conv1d(k, conv_state[1], use_cache, cu_seqlens)
            v, cv = self.v_conv1d(v, conv_state[2], use_cache, cu_seqlens)
            new_conv = (cq, ck, cv)
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        if attention_mask is not None:
            # a conv bias makes k nonzero even from zeroed inputs: k = 0 keeps padding out of the state
            k = k * attention_mask[:, -T:, None].to(k.dtype)

        g = self._decay(self.f_proj(x))
        b = torch.sigmoid(self.b_proj(x))
        w = torch.sigmoid(self.w_proj(x))
        q, k, b = (t.unflatten(-1, (self.num_heads, self.head_k_dim)) for t in (q, k, b))  # [B, T, H, K]
        v, w = (t.unflatten(-1, (self.num_v_heads, self.head_v_dim)) for t in (v, w))  # [B, T, HV, V]
        if self.num_v_heads > self.num_heads:
            rep = self.num_v_heads // self.num_heads
            q, k, g, b = (t.repeat_interleave(rep, dim=2) for t in (q, k, g, b))
        if self.allow_neg_eigval:
            b = b * 2.0

        state = last.recurrent_state if last is not None else None
        if state is not None and T == 1 and use_cache and not torch.is_grad_enabled():
            # single-token decode: the recurrent kernel updates the cached state in place (only when asked
            # to update the cache; without use_cache the cache is read, never written)
            o, state = gdn2_step(q, k, v, g, b, w, state)
        else:
            o, state = self.recurrence(
                q, k, v, g, b, w, initial_state=state, output_final_state=use_cache, cu_seqlens=cu_seqlens
            )
        if use_cache and cache is not None:
            cache[self.layer_idx] = RecurrentLayerState(recurrent_state=state, conv_state=new_conv)

        gate = self.g_proj(x).unflatten(-1, (self.num_v_heads, self.head_v_dim))
        o = self.o_norm(o, gate).to(hidden_states.dtype).flatten(-2)  # [B, T, value_dim]
        return self.o_proj(o)

    def _decay(self, f: torch.Tensor) -> torch.Tensor:
        """g = -exp(A_log) * softplus(f + dt_bias), [B, T, H, K] in float32 (the kernels cumulate it over
        whole chunks)."""
        if use_fused_ops(self.fused_ops, f):
            from gdn2_kernels.layer_ops import decay_gate

            g = decay_gate(f, self.dt_bias, self.A_log)
        else:
            g = F.softplus(f + self.dt_bias.float())  # bf16 + fp32 promotes: one fp32 pass
            g = -self.A_log.float().exp().repeat_interleave(self.head_k_dim) * g
        return g.unflatten(-1, (self.num_heads, self.head_k_dim))
