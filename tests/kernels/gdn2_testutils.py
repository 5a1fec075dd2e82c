"""Shared test helpers: well-conditioned random GDN-2 inputs and a relative-error check."""

from __future__ import annotations

import torch


def rand_inputs(B, T, H, K, V, *, dtype=torch.float64, device="cpu", seed=0, g_range=(-5.0, -0.1)):
    """Random inputs in the ranges a GDN-2 layer produces: gates in (0, 1), g in g_range, never zeros."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def u(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    lo, hi = g_range
    q, k, v = r(B, T, H, K), r(B, T, H, K), r(B, T, H, V)
    g = lo + (hi - lo) * u(B, T, H, K)
    b, w = u(B, T, H, K), u(B, T, H, V)
    gdt = torch.float64 if dtype == torch.float64 else torch.float32
    out = [x.to(device=device, dtype=dtype) for x in (q, k, v)]
    out.append(g.to(device=device, dtype=gdt))
    out += [x.to(device=device, dtype=dtype) for x in (b, w)]
    return out


def rel_err(ref: torch.Tensor, got: torch.Tensor) -> float:
    """||got - ref|| / ||ref|| in float64."""
    ref, got = ref.double(), got.double()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def assert_close(name: str, ref: torch.Tensor, got: torch.Tensor, tol: float) -> None:
    assert ref.shape == got.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    err = rel_err(ref, got)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"
