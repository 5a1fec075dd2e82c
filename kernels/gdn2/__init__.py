"""Gated DeltaNet-2 operator.

    S_t = (I - k_t (b_t*k_t)^T) Diag(exp g_t) S_{t-1} + k_t (w_t*v_t)^T,    o_t = S_t^T (scale * q_t)

`reference.py` holds the token-by-token definition (the oracle and the CPU path).
"""

from kernels.gdn2.api import gdn2, gdn2_step

__all__ = ["gdn2", "gdn2_step"]
