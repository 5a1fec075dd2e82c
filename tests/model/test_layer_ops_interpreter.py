"""The fused layer kernels (`gdn2_kernels.layer_ops`) on CPU: under the Triton interpreter they must equal the
model's PyTorch ops (their reference), including the conv cache, odd sizes and strided inputs. The GPU
test in test_model_gpu.py checks a whole model with and without them in bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPT = Path(__file__).with_name("layer_ops_interpret_cases.py")


@pytest.fixture(scope="module")
def errors(run_interpreted) -> dict:
    return run_interpreted(SCRIPT)


def test_every_case_ran(errors):
    expected = {f"conv_T{T}_{c}" for T in (1, 2, 37, 70) for c in ("cache", "nocache")}
    expected |= {"conv_strided", "conv_packed", "decay", "norm_sigmoid", "norm_swish", "silu_mul"}
    assert set(errors) == expected


@pytest.mark.parametrize("kind", ["conv", "decay", "norm", "silu_mul"])
def test_fused_kernel_equals_pytorch_ops(errors, kind):
    for name, err in errors.items():
        if name.startswith(kind):
            assert err <= 1e-5, f"{name}: {err:.2e}"
