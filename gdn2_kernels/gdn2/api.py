"""Public entry points: validate, then dispatch (Triton on CUDA, the PyTorch reference elsewhere).

Validation happens here, once, so every backend can assume well-formed inputs. A wrong shape, dtype
or device raises `ValueError` naming the tensor and what was expected.
"""

from __future__ import annotations

import logging
from functools import cache

import torch

from gdn2_kernels.common.chunks import seq_offsets
from gdn2_kernels.gdn2.reference import chunk_gdn2, recurrent_gdn2

logger = logging.getLogger(__name__)

_IO_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
_STATE_DTYPES = (torch.float32, torch.float64)


@cache
def _triton_backend():
    """The Triton module, or None (logged once, with the reason) when it cannot be used here."""
    try:
        from gdn2_kernels.gdn2 import chunk as triton_chunk
    except ImportError as err:  # triton missing or broken: the torch path still works on CUDA
        logger.warning("GDN-2 Triton kernels unavailable (%s); CUDA falls back to the PyTorch reference", err)
        return None
    return triton_chunk


@cache
def _log_unsupported_once(K: int, V: int, dtype: torch.dtype) -> None:
    logger.warning(
        "GDN-2 Triton kernels do not cover K=%d, V=%d, %s; using the PyTorch reference on CUDA", K, V, dtype
    )


def _log_unsupported(q: torch.Tensor, v: torch.Tensor) -> None:
    if q.dtype != torch.float64:  # float64 on CUDA is the oracle's own choice, not a fallback
        _log_unsupported_once(q.shape[-1], v.shape[-1], q.dtype)


def _check_tensor(name: str, x: object, shape: tuple[int | None, ...], dtypes, device) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if x.dtype not in dtypes:
        raise ValueError(f"{name} must have dtype in {[str(d) for d in dtypes]}, got {x.dtype}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device} like q, got {x.device}")


def validate_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    w: torch.Tensor,
    *,
    scale: float | None,
    initial_state: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    state_name: str = "initial_state",
) -> None:
    """Raise ValueError on the first malformed argument; shapes as in the module docstring of kernels."""
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        got = list(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"q must be a 4-D tensor [B, T, H, K], got {got}")
    B, T, H, K = q.shape
    dev = q.device
    _check_tensor("q", q, (B, T, H, K), _IO_DTYPES, dev)
    _check_tensor("k", k, (B, T, H, K), _IO_DTYPES, dev)
    _check_tensor("b", b, (B, T, H, K), _IO_DTYPES, dev)
    _check_tensor("g", g, (B, T, H, K), _STATE_DTYPES, dev)
    if not isinstance(v, torch.Tensor) or v.dim() != 4:
        raise ValueError(f"v must be a 4-D tensor [B, T, H, V] with B, T, H = {B}, {T}, {H}")
    V = v.shape[-1]
    _check_tensor("v", v, (B, T, H, V), _IO_DTYPES, dev)
    _check_tensor("w", w, (B, T, H, V), _IO_DTYPES, dev)
    if K == 0 or V == 0 or H == 0:
        raise ValueError(f"head sizes must be positive, got H={H}, K={K}, V={V}")
    if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number or None, got {scale!r}")
    N = B
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError("cu_seqlens must be a 1-D tensor [N+1] of sequence offsets")
        if cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
        if B != 1:
            raise ValueError(f"cu_seqlens packs sequences into B == 1, got B={B}")
        # remembered per tensor: the layers of one forward share it, and validate it with one copy
        offs = seq_offsets(cu_seqlens)
        if offs[0] != 0 or offs[-1] != T or any(e < s for s, e in zip(offs[:-1], offs[1:], strict=True)):
            raise ValueError(f"cu_seqlens must rise from 0 to T={T} without decreasing, got {list(offs)}")
        N = len(offs) - 1
    if initial_state is not None:
        _check_tensor(state_name, initial_state, (N, H, K, V), _STATE_DTYPES, dev)


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
    """GDN-2 over whole sequences (prefill and training).

    Args:
        q, k, b: [B, T, H, K] queries, keys and erase gates in [0, 1] (bf16, fp16, fp32 or fp64).
        v, w: [B, T, H, V] values and write gates in [0, 1].
        g: [B, T, H, K] float32 (or float64) log-decay, <= 0.
        scale: query scale; default K**-0.5.
        initial_state: [N, H, K, V] float32, N = B (or the number of sequences with `cu_seqlens`).
        output_final_state: also return the state after the last token of each sequence.
        cu_seqlens: [N+1] int offsets packing N sequences into B == 1, no padding between them.
        l2norm_qk: L2-normalise q and k per head first (the GDN-2 layer always does).

    Returns:
        o [B, T, H, V] in v's dtype, and the final state [N, H, K, V] float32 or None.
    """
    validate_inputs(q, k, v, g, b, w, scale=scale, initial_state=initial_state, cu_seqlens=cu_seqlens)
    kwargs = dict(
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        l2norm_qk=l2norm_qk,
    )
    if q.is_cuda:
        backend = _triton_backend()
        if backend is not None and backend.supports(q, v):
            return backend.chunk_gdn2(q, k, v, g, b, w, **kwargs)
        if backend is not None:
            _log_unsupported(q, v)
    return chunk_gdn2(q, k, v, g, b, w, **kwargs)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode T tokens (often 1) from `state` [B, H, K, V] float32, updating it in place.

    Same tensor layout as `gdn2`; returns (o [B, T, H, V], state) with `state` the same object.
    """
    if not isinstance(state, torch.Tensor):
        raise ValueError(f"state must be a torch.Tensor [B, H, K, V] float32, got {type(state).__name__}")
    validate_inputs(q, k, v, g, b, w, scale=scale, initial_state=state, cu_seqlens=None, state_name="state")
    if q.is_cuda:
        backend = _triton_backend()
        if backend is not None and backend.supports(q, v):
            return backend.gdn2_step(q, k, v, g, b, w, state, scale=scale, l2norm_qk=l2norm_qk)
        if backend is not None:
            _log_unsupported(q, v)
    o, new_state = recurrent_gdn2(
        q, k, v, g, b, w, scale=scale, initial_state=state, output_final_state=True, l2norm_qk=l2norm_qk
    )
    with torch.no_grad():
        state.copy_(new_state)
    return o, state
