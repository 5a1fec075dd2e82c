"""CPU tests of the PyTorch GDN-2 paths. Ground truth: the token loop `recurrent_gdn2` (the definition).

Covered: chunked vs recurrence in float64 (T not a multiple of the chunk, initial state), gradcheck,
the KDA / Gated DeltaNet / DeltaNet reductions against their own recurrences, state carry across two
halves, varlen == separate runs, and the public `gdn2` / `gdn2_step` on CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gdn2_testutils import assert_close, rand_inputs

from gdn2_kernels import gdn2, gdn2_step
from gdn2_kernels.gdn2.reference import chunk_gdn2, recurrent_gdn2


@pytest.mark.parametrize(
    "B,T,H,K,V,chunk,sub",
    [
        pytest.param(2, 150, 3, 16, 8, 64, 16, id="B2-T150-K16-V8"),
        pytest.param(1, 64, 2, 32, 32, 64, 16, id="B1-T64-K32-V32"),
        pytest.param(1, 1, 1, 8, 4, 64, 16, id="B1-T1"),
        pytest.param(3, 37, 2, 8, 16, 16, 4, id="B3-T37-C16-S4"),
    ],
)
def test_chunked_matches_recurrence_float64(B, T, H, K, V, chunk, sub):
    q, k, v, g, b, w = rand_inputs(B, T, H, K, V, seed=T)
    h0 = torch.randn(B, H, K, V, dtype=torch.float64)
    o_ref, s_ref = recurrent_gdn2(q, k, v, g, b, w, initial_state=h0, output_final_state=True)
    o, s = chunk_gdn2(
        q, k, v, g, b, w, initial_state=h0, output_final_state=True, chunk_size=chunk, sub_chunk=sub
    )
    assert_close("o", o_ref, o, 1e-10)
    assert_close("final_state", s_ref, s, 1e-10)


def test_strong_decay_does_not_overflow():
    # cumulative decay of -20 per token reaches e^-1280 inside one chunk: e^{-gamma} alone would overflow
    q, k, v, g, b, w = rand_inputs(1, 128, 1, 8, 8, dtype=torch.float32, g_range=(-20.0, -10.0))
    o, s = chunk_gdn2(q, k, v, g, b, w, output_final_state=True)
    o_ref, s_ref = recurrent_gdn2(q, k, v, g, b, w, output_final_state=True)
    assert_close("o", o_ref, o, 1e-5)
    assert_close("final_state", s_ref, s, 1e-5)


def test_gradcheck_chunked():
    q, k, v, g, b, w = rand_inputs(1, 7, 1, 4, 3, seed=3)
    h0 = torch.randn(1, 1, 4, 3, dtype=torch.float64)
    args = [x.clone().requires_grad_() for x in (q, k, v, g, b, w, h0)]

    def f(q, k, v, g, b, w, h0):
        o, s = chunk_gdn2(
            q, k, v, g, b, w, initial_state=h0, output_final_state=True, chunk_size=4, sub_chunk=2
        )
        return o, s

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)


def test_gradients_chunked_match_recurrence():
    q, k, v, g, b, w = rand_inputs(2, 70, 2, 8, 8, seed=5)
    h0 = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    grads = []
    for fn in (recurrent_gdn2, chunk_gdn2):
        args = [x.clone().requires_grad_() for x in (q, k, v, g, b, w, h0)]
        o, s = fn(*args[:6], initial_state=args[6], output_final_state=True)
        ((o * torch.cos(o)).sum() + (s * s).sum()).backward()
        grads.append([a.grad for a in args])
    for name, r, c in zip(["q", "k", "v", "g", "b", "w", "h0"], *grads, strict=True):
        assert_close(f"d{name}", r, c, 1e-10)


def _kda(q, k, v, g, beta, scale):
    """Kimi Delta Attention: S_t = (I - beta k k^T) Diag(alpha_t) S_{t-1} + beta k v^T."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        kt, bt = k[:, t], beta[:, t, :, None, None]  # [B, H, K], [B, H, 1, 1]
        erase = torch.eye(K, dtype=q.dtype) - bt * kt[..., :, None] * kt[..., None, :]
        S = erase @ (g[:, t].exp()[..., None] * S) + bt * kt[..., :, None] * v[:, t, :, None, :]
        out.append((S * q[:, t, ..., None]).sum(-2) * scale)
    return torch.stack(out, 1)


def _gated_deltanet(q, k, v, a, beta, scale):
    """Gated DeltaNet: S_t = alpha_t (I - beta k k^T) S_{t-1} + beta k v^T, scalar alpha_t = e^{a_t}."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        kt, bt = k[:, t], beta[:, t, :, None, None]
        S = a[:, t, :, None, None].exp() * S
        S = S - bt * kt[..., :, None] * (kt[..., None, :] @ S) + bt * kt[..., :, None] * v[:, t, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]) * scale)
    return torch.stack(out, 1)


def _deltanet(q, k, v, beta, scale):
    """DeltaNet: S_t = S_{t-1} + beta k (v - S_{t-1}^T k)^T."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        kt = k[:, t]
        pred = torch.einsum("bhkv,bhk->bhv", S, kt)
        S = S + beta[:, t, :, None, None] * kt[..., :, None] * (v[:, t] - pred)[..., None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]) * scale)
    return torch.stack(out, 1)


def _reduction_inputs():
    B, T, H, K, V = 2, 45, 2, 8, 6
    q, k, v, g, _, _ = rand_inputs(B, T, H, K, V, seed=11)
    beta = torch.rand(B, T, H, dtype=torch.float64)
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    return q, k, v, g, beta, qn, kn, K**-0.5


def test_reduces_to_kda():
    q, k, v, g, beta, qn, kn, scale = _reduction_inputs()
    b = beta[..., None].expand_as(k)
    w = beta[..., None].expand_as(v)
    o, _ = chunk_gdn2(q, k, v, g, b, w, chunk_size=16, sub_chunk=4)
    assert_close("o", _kda(qn, kn, v, g, beta, scale), o, 1e-10)


def test_reduces_to_gated_deltanet():
    q, k, v, g, beta, qn, kn, scale = _reduction_inputs()
    a = g[..., 0]
    o, _ = chunk_gdn2(
        q, k, v, a[..., None].expand_as(k), beta[..., None].expand_as(k), beta[..., None].expand_as(v)
    )
    assert_close("o", _gated_deltanet(qn, kn, v, a, beta, scale), o, 1e-10)


def test_reduces_to_deltanet():
    q, k, v, g, beta, qn, kn, scale = _reduction_inputs()
    zero = torch.zeros_like(g)
    o, _ = chunk_gdn2(q, k, v, zero, beta[..., None].expand_as(k), beta[..., None].expand_as(v))
    assert_close("o", _deltanet(qn, kn, v, beta, scale), o, 1e-10)


@pytest.mark.parametrize("fn", [chunk_gdn2, recurrent_gdn2, gdn2], ids=["chunk", "recurrent", "gdn2"])
def test_state_carry_two_halves(fn):
    q, k, v, g, b, w = rand_inputs(2, 90, 2, 8, 8, seed=7)
    o_full, s_full = fn(q, k, v, g, b, w, output_final_state=True)
    half = [x[:, :41] for x in (q, k, v, g, b, w)], [x[:, 41:] for x in (q, k, v, g, b, w)]
    o1, s1 = fn(*half[0], output_final_state=True)
    o2, s2 = fn(*half[1], initial_state=s1, output_final_state=True)
    assert_close("o", o_full, torch.cat([o1, o2], 1), 1e-10)
    assert_close("final_state", s_full, s2, 1e-10)


@pytest.mark.parametrize("fn", [chunk_gdn2, gdn2], ids=["chunk", "gdn2"])
def test_varlen_equals_separate_runs(fn):
    lens = [13, 1, 70, 29]
    T = sum(lens)
    q, k, v, g, b, w = rand_inputs(1, T, 2, 8, 4, seed=9)
    h0 = torch.randn(len(lens), 2, 8, 4, dtype=torch.float64)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    o, s = fn(q, k, v, g, b, w, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    for n in range(len(lens)):
        sl = slice(int(cu[n]), int(cu[n + 1]))
        o_n, s_n = recurrent_gdn2(
            *(x[:, sl] for x in (q, k, v, g, b, w)), initial_state=h0[n : n + 1], output_final_state=True
        )
        assert_close(f"o[{n}]", o_n, o[:, sl], 1e-10)
        assert_close(f"state[{n}]", s_n, s[n : n + 1], 1e-10)


def test_gdn2_step_decodes_token_by_token_in_place():
    q, k, v, g, b, w = rand_inputs(2, 12, 2, 8, 8, seed=13)
    o_ref, s_ref = gdn2(q, k, v, g, b, w, output_final_state=True)
    state = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    outs = []
    for t in range(12):
        o_t, st = gdn2_step(*(x[:, t : t + 1] for x in (q, k, v, g, b, w)), state)
        assert st is state
        outs.append(o_t)
    assert_close("o", o_ref, torch.cat(outs, 1), 1e-10)
    assert_close("state", s_ref, state, 1e-10)


def test_low_precision_inputs_keep_dtype_and_accuracy():
    q, k, v, g, b, w = rand_inputs(1, 100, 2, 16, 16, dtype=torch.bfloat16, seed=17)
    o, s = gdn2(q, k, v, g, b, w, output_final_state=True)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    o_ref, _ = recurrent_gdn2(*(x.double() for x in (q, k, v, g, b, w)))
    assert_close("o", o_ref, o, 1e-2)


@pytest.mark.parametrize("fn", [chunk_gdn2, recurrent_gdn2, gdn2], ids=["chunk", "recurrent", "gdn2"])
def test_empty_sequence_passes_the_state_through(fn):
    q, k, v, g, b, w = rand_inputs(2, 0, 2, 8, 4)
    h0 = torch.randn(2, 2, 8, 4, dtype=torch.float64)
    o, s = fn(q, k, v, g, b, w, initial_state=h0, output_final_state=True)
    assert o.shape == (2, 0, 2, 4)
    assert torch.equal(s, h0)


def test_varlen_with_an_empty_sequence():
    q, k, v, g, b, w = rand_inputs(1, 20, 2, 8, 4, seed=19)
    h0 = torch.randn(3, 2, 8, 4, dtype=torch.float64)
    cu = torch.tensor([0, 12, 12, 20])
    o, s = gdn2(q, k, v, g, b, w, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    assert torch.equal(s[1], h0[1])
    for n, sl in ((0, slice(0, 12)), (2, slice(12, 20))):
        o_n, s_n = recurrent_gdn2(
            *(x[:, sl] for x in (q, k, v, g, b, w)), initial_state=h0[n : n + 1], output_final_state=True
        )
        assert_close(f"o[{n}]", o_n, o[:, sl], 1e-10)
        assert_close(f"state[{n}]", s_n, s[n : n + 1], 1e-10)


def test_triton_entry_with_no_tokens_returns_the_state_in_its_dtype():
    # T = 0 never launches a kernel, so the CUDA entry's answer is checkable on CPU
    pytest.importorskip("triton")
    from gdn2_kernels.gdn2 import chunk as triton_chunk

    q, k, v, g, b, w = rand_inputs(1, 0, 2, 16, 16, dtype=torch.float32)
    h0 = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    o, s = triton_chunk.chunk_gdn2(q, k, v, g, b, w, initial_state=h0, output_final_state=True)
    assert o.shape == (1, 0, 2, 16)
    assert s.dtype == torch.float64 and torch.equal(s, h0) and s is not h0
