"""Gated DeltaNet-2 operator.

    S_t = (I - k_t (b_t*k_t)^T) Diag(exp g_t) S_{t-1} + k_t (w_t*v_t)^T,    o_t = S_t^T (scale * q_t)

Files, one role each:
    api.py             public `gdn2` / `gdn2_step`: validation, then dispatch (Triton on CUDA, else reference)
    reference.py       token loop (the definition, the oracle) and the chunked WY/UT form (the CPU path)
    chunk.py           CUDA entry: the autograd Function and the decode step
    chunk_fwd.py       Triton forward, orchestration: launches, the segmented schedule of one long sequence
    chunk_intra.py     forward kernel, intra-chunk: scores L and P per sub-chunk
    chunk_wy.py        forward kernel, WY: A = (I + L)^{-1}, Kb, Ut and the state pass's operands
    chunk_state.py     forward kernel, inter-chunk: state pass fused with the output
    chunk_bwd.py       Triton backward: reverse state pass, WY and score gradients, gate
    fused_recurrent.py Triton decode kernel (state updated in place)
    tuning.py          launch settings: one frozen row per (GPU architecture, shape bucket)
Shared Triton helpers (loads, norms, products) live in gdn2_kernels/common/tl_helpers.py.
The Triton modules import on CPU-only machines; they are only launched for CUDA tensors.
"""

from gdn2_kernels.gdn2.api import gdn2, gdn2_step

__all__ = ["gdn2", "gdn2_step"]
