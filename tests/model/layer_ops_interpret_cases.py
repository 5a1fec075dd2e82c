"""Run `gdn2_kernels.layer_ops` under the Triton interpreter (TRITON_INTERPRET=1, CPU, float32) against the
model's PyTorch ops and print the relative errors as JSON. Launched in a subprocess by
test_layer_ops_interpreter.py: the interpreter must be chosen before any kernel is defined."""

from __future__ import annotations

import json
import os

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

from gdn2_kernels import layer_ops  # noqa: E402
from gdn2_model.layer import (  # noqa: E402
    GatedDeltaNet2,
    RMSNormGated,
    ShortConvolution,
    positions_in_sequence,
)


def rel(ref: torch.Tensor, got: torch.Tensor) -> float:
    return ((got.double() - ref.double()).norm() / ref.double().norm()).item()


def main() -> None:
    torch.manual_seed(0)
    errs: dict[str, float] = {}
    # odd sizes: T and D cross the kernels' block edges; T < W - 1 reaches the cache from every row
    for T in (1, 2, 37, 70):
        conv = ShortConvolution(200, 4, bias=True, fused_ops=False)
        with torch.no_grad():
            conv.bias.normal_()
        x = torch.randn(2, T, 200)
        cache = torch.randn(2, 3, 200)
        with torch.no_grad():
            for name, c in (("cache", cache), ("nocache", None)):
                ref, _ = conv(x, c.clone() if c is not None else None)
                got = layer_ops.causal_conv1d_silu(x, conv.weight[:, 0], conv.bias, c)
                errs[f"conv_T{T}_{name}"] = rel(ref, got)
    # a strided view (every other token of a wider tensor) through the same kernel
    wide = torch.randn(1, 50, 2, 200)
    conv = ShortConvolution(200, 4, fused_ops=False)
    with torch.no_grad():
        ref, _ = conv(wide[:, :, 0].contiguous())
        errs["conv_strided"] = rel(
            ref, layer_ops.causal_conv1d_silu(wide[:, :, 0], conv.weight[:, 0], None, None)
        )

    # packed sequences (one shorter than the conv, one empty): no tap crosses into the previous sequence
    conv = ShortConvolution(200, 4, bias=True, fused_ops=False)
    with torch.no_grad():
        conv.bias.normal_()
        cu = torch.tensor([0, 2, 2, 39, 70])
        x = torch.randn(1, 70, 200)
        ref, _ = conv(x, cu_seqlens=cu)
        pos = positions_in_sequence(cu, 70)
        errs["conv_packed"] = rel(
            ref, layer_ops.causal_conv1d_silu(x, conv.weight[:, 0], conv.bias, None, pos)
        )

    layer = GatedDeltaNet2(hidden_size=64, head_dim=16, num_heads=3, fused_ops=False)
    f = 4 * torch.randn(2, 19, 48)
    f[0, 0, :4] = torch.tensor([30.0, -30.0, 19.9, -16.0])  # softplus' linear and exp(z) regions
    with torch.no_grad():
        errs["decay"] = rel(
            layer._decay(f), layer_ops.decay_gate(f, layer.dt_bias, layer.A_log).unflatten(-1, (3, 16))
        )

    for act in ("sigmoid", "swish"):
        norm = RMSNormGated(32, activation=act, fused_ops=False)
        with torch.no_grad():
            norm.weight.normal_()
            o, gate = torch.randn(3, 7, 5, 32), torch.randn(3, 7, 5, 32)
            errs[f"norm_{act}"] = rel(
                norm(o, gate), layer_ops.rms_norm_gated(o, gate, norm.weight, norm.eps, act)
            )

    a, b = torch.randn(3, 1500), torch.randn(3, 1500)
    errs["silu_mul"] = rel(torch.nn.functional.silu(a) * b, layer_ops.silu_mul(a, b))
    print(json.dumps(errs))


if __name__ == "__main__":
    main()
