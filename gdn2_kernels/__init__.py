"""The GDN-2 operator: Triton kernels on CUDA, a PyTorch reference everywhere.

Public API (one signature for every backend):

    o, final_state = gdn2(q, k, v, g, b, w, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None, l2norm_qk=True)
    o, state = gdn2_step(q, k, v, g, b, w, state)

This package knows nothing of models or retrieval.
"""

from gdn2_kernels.gdn2 import gdn2, gdn2_step

__all__ = ["gdn2", "gdn2_step"]
