"""Every load and store of every GDN-2 kernel stays inside the tensors of its launch (Triton interpreter).

On the GPU an access past a tensor usually lands in the rest of a caching-allocator segment and goes
unnoticed; it faults only when the segment ends next to unmapped memory, i.e. depending on what ran before
in the process. Here the interpreter's masked loads and stores are checked against the byte extents of the
launch's tensor arguments, so such an access fails on the CPU, in CI. Prints, as JSON, the number of
accesses outside any argument per case, and for a kernel that reads one element past its input (the check
must see it). Launched by test_triton_bounds.py with TRITON_INTERPRET=1.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import numpy as np
import torch
import triton
import triton.language as tl
import triton.runtime.interpreter as interp

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gdn2_testutils import rand_inputs  # noqa: E402

from gdn2_kernels import layer_ops  # noqa: E402
from gdn2_kernels.gdn2 import chunk as triton_chunk  # noqa: E402
from gdn2_kernels.gdn2.tuning import lookup  # noqa: E402

_extents: list[tuple[int, int]] = []  # [start, end) bytes of the running launch's tensor arguments
_outside: list[int] = []  # accesses outside all of them, one entry per offending load or store


def _tensor_extent(x: torch.Tensor) -> tuple[int, int]:
    last = sum((n - 1) * s for n, s in zip(x.shape, x.stride(), strict=True))
    return x.data_ptr(), x.data_ptr() + (last + 1) * x.element_size()


def _check(ptrs, mask, itemsize: int) -> None:
    p = ptrs.data[np.broadcast_to(mask.data, ptrs.data.shape)].astype(np.uint64)
    if p.size == 0:
        return
    inside = np.zeros(p.shape, dtype=bool)
    for lo, hi in _extents:
        inside |= (p >= lo) & (p + itemsize <= hi)
    if not inside.all():
        _outside.append(int((~inside).sum()))


def install() -> None:
    """Wrap the interpreter's argument staging (to learn the launch's tensors) and its loads and stores."""
    stage = interp.GridExecutor._init_args_hst
    load = interp.InterpreterBuilder.create_masked_load
    store = interp.InterpreterBuilder.create_masked_store

    def staged(self, args, kwargs):
        args_hst, kwargs_hst = stage(self, args, kwargs)
        _extents[:] = [
            _tensor_extent(x)
            for x in [*args_hst, *kwargs_hst.values()]
            if isinstance(x, torch.Tensor) and x.numel()
        ]
        return args_hst, kwargs_hst

    def checked_load(self, ptrs, mask, other, cache_policy, is_volatile):
        _check(ptrs, mask, np.dtype(interp._get_np_dtype(ptrs.get_element_ty())).itemsize)
        return load(self, ptrs, mask, other, cache_policy, is_volatile)

    def checked_store(self, ptrs, value, mask, cache_policy):
        _check(ptrs, mask, value.data.dtype.itemsize)
        return store(self, ptrs, value, mask, cache_policy)

    interp.GridExecutor._init_args_hst = staged
    interp.InterpreterBuilder.create_masked_load = checked_load
    interp.InterpreterBuilder.create_masked_store = checked_store


@triton.jit
def _reads_one_past(x, y, N: tl.constexpr):
    o = tl.arange(0, N)
    tl.store(y + o, tl.load(x + o + 1))


def outside(fn) -> int:
    _outside.clear()
    fn()
    return sum(_outside)


def self_check() -> None:
    x = torch.randn(8)
    _reads_one_past[(1,)](x, torch.empty(8), N=8)


def operator(B, T, H, K, V, *, lens=None, tuning=None, grads=True, g_range=(-5.0, -0.1)):
    """Forward (and backward) with an initial and a final state, as the GPU tests run it."""

    def run() -> None:
        xs = rand_inputs(1 if lens else B, T, H, K, V, dtype=torch.float32, seed=T + K, g_range=g_range)
        n = len(lens) if lens else B
        kw = {}
        if lens:
            kw["cu_seqlens"] = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
        args = [x.clone().requires_grad_(grads) for x in (*xs, torch.randn(n, H, K, V))]
        with torch.set_grad_enabled(grads):
            o, ht = triton_chunk.chunk_gdn2(*args[:6], initial_state=args[6], output_final_state=True,
                                            tuning=tuning, **kw)  # fmt: skip
            if grads:
                (o.sum() + ht.sum()).backward()

    return run


def decode(B, T, H, K, V):
    def run() -> None:
        xs = rand_inputs(B, T, H, K, V, dtype=torch.float32, seed=B)
        with torch.no_grad():
            triton_chunk.gdn2_step(*xs, torch.randn(B, H, K, V))

    return run


def layer_ops_case(B=1, T=300, D=32, H=2) -> None:
    x = torch.randn(B, T, D)
    w = torch.randn(D, 4)
    layer_ops.causal_conv1d_silu(x, w, None, None)
    layer_ops.causal_conv1d_silu(x[:, :1].contiguous(), w, torch.randn(D), torch.randn(B, 3, D))
    layer_ops.decay_gate(torch.randn(B, T, D), torch.randn(D), torch.randn(H))
    layer_ops.rms_norm_gated(torch.randn(B, T, H, D // H), torch.randn(B, T, H, D // H), torch.randn(D // H),
                             1e-6, "sigmoid")  # fmt: skip
    layer_ops.silu_mul(torch.randn(B, T, 48), torch.randn(B, T, 48))


if __name__ == "__main__":
    install()
    # the long row (Ut prefetched), cut into 2 segments of at least 1 chunk
    seg = replace(lookup("interpreter", "long"), segments=2, segment_min_chunks=1)
    assert seg.segment_ut_prefetch
    out = {
        "self_check": outside(self_check),
        # the RAG reader test's shapes (a partial last chunk), inference as the reader runs it
        "reader_shapes": outside(operator(1, 150, 2, 16, 16, grads=False)),
        "fwd_bwd": outside(operator(2, 70, 2, 16, 16)),
        "fwd_bwd_k32_v16": outside(operator(1, 65, 2, 32, 16)),
        "varlen": outside(operator(1, 72, 1, 16, 16, lens=[5, 1, 66])),
        "strong_decay": outside(operator(1, 40, 1, 16, 16, g_range=(-20.0, -10.0))),
        "segmented_ut_prefetch": outside(operator(1, 300, 1, 16, 16, tuning=seg, grads=False)),
        "segmented": outside(
            operator(1, 300, 1, 16, 16, tuning=replace(seg, segment_ut_prefetch=False), grads=False)
        ),
        "decode": outside(decode(2, 3, 2, 16, 16)),
        "layer_ops": outside(layer_ops_case),
    }
    print(json.dumps(out))
