"""Run the Triton kernels under the Triton interpreter (TRITON_INTERPRET=1, CPU) on tiny inputs and print
their relative errors against the float64 reference as JSON. Launched in a subprocess by
test_triton_interpreter.py: the interpreter must be chosen before any kernel is defined."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gdn2_testutils import rand_inputs, rel_err  # noqa: E402

from gdn2_kernels.gdn2 import chunk as triton_chunk  # noqa: E402
from gdn2_kernels.gdn2 import chunk_bwd, chunk_fwd  # noqa: E402
from gdn2_kernels.gdn2.reference import chunk_gdn2 as reference  # noqa: E402
from gdn2_kernels.gdn2.tuning import lookup  # noqa: E402

# the interpreter's row (float32 operands and exact products: the interpreter has no bfloat16), with two
# blocks of 8 key columns in the backward's column-split kernels (K = 16 here)
BASE = lookup("interpreter", "narrow")
SPLIT_K = replace(BASE, bwd_wy_block_k=8, bwd_scores_block_k=8)

NAMES = ["q", "k", "v", "g", "b", "w", "h0"]


def grads(fn, xs, h0, do, dht, **kw):
    args = [x.detach().clone().requires_grad_() for x in (*xs, h0)]
    o, ht = fn(*args[:6], initial_state=args[6], output_final_state=True, **kw)
    ((o * do).sum() + (ht * dht).sum()).backward()
    return [o, ht] + [a.grad for a in args]


def case(T, N=1, g_range=(-5.0, -0.1), lens=None, K=16, V=16, seed=0, l2norm_qk=True, tuning=SPLIT_K):
    xs = rand_inputs(1 if lens else N, T, 1, K, V, dtype=torch.float32, seed=seed, g_range=g_range)
    gen = torch.Generator().manual_seed(seed + 1)
    S = len(lens) if lens else N
    h0 = torch.randn(S, 1, K, V, generator=gen)
    do = torch.randn(*xs[2].shape, generator=gen)
    dht = torch.randn(S, 1, K, V, generator=gen)
    kw = {"l2norm_qk": l2norm_qk}
    if lens:
        kw["cu_seqlens"] = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    ours = grads(triton_chunk.chunk_gdn2, xs, h0, do, dht, tuning=tuning, **kw)
    ref = grads(reference, [x.double() for x in xs], h0.double(), do.double(), dht.double(), **kw)
    return {
        name: rel_err(r, o)
        for name, r, o in zip(["o", "ht"] + [f"d{n}" for n in NAMES], ref, ours, strict=True)
    }


def decode_case():
    xs = rand_inputs(2, 5, 1, 16, 16, dtype=torch.float32, seed=7)
    h0 = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(8))
    state = h0.clone()
    o, _ = triton_chunk.gdn2_step(*xs, state, tuning=BASE)
    o_ref, ht_ref = reference(*(x.double() for x in xs), initial_state=h0.double(), output_final_state=True)
    return {"o": rel_err(o_ref, o), "ht": rel_err(ht_ref, state)}


def inference_case():
    """Without gradients the forward never stores A = (I + L)^{-1}: same output, final state and strong-decay
    path as with them."""
    xs = rand_inputs(1, 70, 1, 16, 16, dtype=torch.float32, seed=11, g_range=(-12.0, -0.1))
    h0 = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(12))
    with torch.inference_mode():
        o, ht = triton_chunk.chunk_gdn2(*xs, initial_state=h0, output_final_state=True, tuning=SPLIT_K)
    o_ref, ht_ref = reference(*(x.double() for x in xs), initial_state=h0.double(), output_final_state=True)
    return {"o": rel_err(o_ref, o), "ht": rel_err(ht_ref, ht)}


class _PoisonedTorch:
    """torch, except that `empty` and `empty_like` fill floating buffers with NaN."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def empty(*args, **kw):
        x = torch.empty(*args, **kw)
        return x.fill_(float("nan")) if x.is_floating_point() else x

    @staticmethod
    def empty_like(*args, **kw):
        x = torch.empty_like(*args, **kw)
        return x.fill_(float("nan")) if x.is_floating_point() else x


def poisoned_scratch_case():
    """Every scratch buffer of the forward and backward starts as NaN: a kernel that reads what no kernel
    wrote (e.g. the never-stored blocks right of the diagonal of L and P) turns the result into NaN."""
    chunk_fwd.torch = chunk_bwd.torch = _PoisonedTorch()
    try:
        return {"T70": case(70, seed=13), "varlen": case(5 + 1 + 66, lens=[5, 1, 66], seed=14)}
    finally:
        chunk_fwd.torch = chunk_bwd.torch = torch


def segmented_case(ut_prefetch: bool = False):
    """One long sequence cut into segments whose state passes chain through the final states (on the GPU
    they overlap the next segment's intra kernels on a side stream): 5 chunks in 2 segments. With
    `ut_prefetch` the state pass loads Ut a step ahead."""
    row = replace(BASE, segments=2, segment_min_chunks=1, segment_ut_prefetch=ut_prefetch)
    xs = rand_inputs(1, 300, 1, 16, 16, dtype=torch.float32, seed=15)
    h0 = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(16))
    with torch.inference_mode():
        o, ht = triton_chunk.chunk_gdn2(*xs, initial_state=h0, output_final_state=True, tuning=row)
    o_ref, ht_ref = reference(*(x.double() for x in xs), initial_state=h0.double(), output_final_state=True)
    return {"o": rel_err(o_ref, o), "ht": rel_err(ht_ref, ht)}


def backward_twice_case():
    """The backward reads the forward's A and P: a second backward on the same graph sees them intact."""
    xs = [x.requires_grad_() for x in rand_inputs(1, 70, 1, 16, 16, dtype=torch.float32, seed=9)]
    o, _ = triton_chunk.chunk_gdn2(*xs, tuning=SPLIT_K)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(10))
    first = torch.autograd.grad(o, xs, do, retain_graph=True)
    second = torch.autograd.grad(o, xs, do)
    return {f"d{name}": rel_err(a, b) for name, a, b in zip(NAMES, first, second, strict=False)}


if __name__ == "__main__":
    out = {
        "T70": case(70),
        "B2_T33": case(33, N=2, seed=1),
        "varlen": case(5 + 1 + 66, lens=[5, 1, 66], seed=2),
        "strong_decay": case(40, g_range=(-20.0, -10.0), seed=3),
        # q, k taken as given (no L2 norm in the kernels)
        "no_l2norm": case(70, seed=4, l2norm_qk=False),
        "decode": decode_case(),
        "inference": inference_case(),
        "segmented": segmented_case(),
        "segmented_ut_prefetch": segmented_case(ut_prefetch=True),
        "poisoned_scratch": poisoned_scratch_case(),
        "backward_twice": backward_twice_case(),
    }
    # one key block per backward kernel (the GPU rows' case for K <= 128)
    out["T70_wholek"] = case(70, tuning=BASE)
    out["varlen_wholek"] = case(5 + 1 + 66, lens=[5, 1, 66], seed=2, tuning=BASE)
    out["strong_decay_wholek"] = case(40, g_range=(-20.0, -10.0), seed=3, tuning=BASE)
    # the exact diagonal both ways (Tuning.scores_exact_levels_max_k; the rows take levels up to K = 64):
    # strong decay everywhere at K = 64 (two K blocks of 32), decay strong enough in only some sub-chunks
    loop = replace(BASE, scores_exact_levels_max_k=0)
    out["strong_decay_loop"] = case(40, g_range=(-20.0, -10.0), seed=3, tuning=loop)
    out["strong_decay_levels_k64"] = case(40, K=64, V=32, g_range=(-20.0, -10.0), seed=8, tuning=BASE)
    out["mixed_decay_levels"] = case(70, g_range=(-9.0, -1.0), seed=9, tuning=BASE)
    out["mixed_decay_loop"] = case(70, g_range=(-9.0, -1.0), seed=9, tuning=loop)
    # WY over two key blocks (K = V = 128, blocks of 64): each block's tiles loaded before its stores (the
    # GPU rows' setting), and stored as they load
    out["wy_loads_first"] = case(70, K=128, V=128, seed=5, tuning=replace(BASE, wy_loads_first=True))
    out["wy_stores_in_order"] = case(70, K=128, V=128, seed=5, tuning=replace(BASE, wy_loads_first=False))
    # heads narrower than the WY block, unequal: K's block is padded and masked, V's too
    out["wy_padded_k_ne_v"] = case(70, K=16, V=32, seed=7)
    # no row given: the table's interpreter row is looked up by shape
    out["table_row"] = case(33, N=2, seed=6, tuning=None)
    print(json.dumps(out))
