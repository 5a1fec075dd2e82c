"""Triton helpers shared by the GDN-2 kernels: loads of token rows and tiles from the flat
[tokens, H, D] layout, the L2-norm scale, and products at a chosen input precision.

Every helper is a `triton.jit` function inlined into its caller; none launches anything.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_rows(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h):
    """Rows `rows` (chunk-relative token indices) of a [tokens, H, D] tensor as float32, zero past n_valid."""
    o_d = tl.arange(0, D)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None], other=0.0).to(tl.float32)


@triton.jit
def inv_norm_rows(x, L2NORM: tl.constexpr):
    """1 / max(|x_row|, eps) of each row of x [R, D] (ones without L2NORM): the L2-norm scale."""
    if L2NORM:
        r = 1.0 / tl.maximum(tl.sqrt(tl.sum(x * x, 1)), 1e-6)
    else:
        r = tl.full([x.shape[0]], 1.0, tl.float32)
    return r


@triton.jit
def as_operand(x, PREC: tl.constexpr):
    """x as a `dot_prec` operand: rounded to bfloat16 once (PREC "bf16"), not at every product."""
    if PREC == "bf16":
        x = x.to(tl.bfloat16)
    return x


@triton.jit
def dot_prec(a, b, PREC: tl.constexpr):
    """a @ b with fp32 accumulation; PREC is a tl.dot input precision or "bf16" (operands rounded first)."""
    if PREC == "bf16":  # noqa: SIM108 (a constexpr if/else compiles one branch; a ternary compiles both)
        r = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        r = tl.dot(a, b, input_precision=PREC)
    return r


@triton.jit
def load_lower_blocks(ptr, ch, C: tl.constexpr, BC: tl.constexpr):
    """One chunk's [C, C] L or P. The scores kernel stores only the BC x BC blocks on or left of the
    diagonal; the blocks right of it read as zeros."""
    o_c = tl.arange(0, C)
    m = (o_c // BC)[:, None] >= (o_c // BC)[None, :]
    return tl.load(ptr + (ch * C + o_c)[:, None] * C + o_c[None, :], mask=m, other=0.0)


@triton.jit
def load_raw(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr):
    """Rows x columns [col0, col0 + BD) of a [tokens, H, D] tensor in its own dtype, zero past n_valid."""
    o_d = col0 + tl.arange(0, BD)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None], other=0.0)


@triton.jit
def load_raw_cols(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr):
    """`load_raw` for a block that may reach past the last column D (BD > D): zero there too."""
    o_d = col0 + tl.arange(0, BD)
    p = ptr + rows.to(tl.int64)[:, None] * (H * D) + i_h * D + o_d[None, :]
    return tl.load(p, mask=(rows < n_valid)[:, None] & (o_d < D)[None, :], other=0.0)


@triton.jit
def load_tile(ptr, rows, n_valid, H: tl.constexpr, D: tl.constexpr, i_h, col0, BD: tl.constexpr):
    """Rows x columns [col0, col0 + BD) of a [tokens, H, D] tensor as float32, zero past n_valid."""
    return load_raw(ptr, rows, n_valid, H, D, i_h, col0, BD).to(tl.float32)
