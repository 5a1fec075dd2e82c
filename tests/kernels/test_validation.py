"""`gdn2` / `gdn2_step` reject malformed inputs with a ValueError naming the tensor and the expectation."""

from __future__ import annotations

import pytest
import torch
from gdn2_testutils import rand_inputs

from gdn2_kernels import gdn2, gdn2_step


def _inputs():
    return rand_inputs(1, 10, 2, 8, 4, dtype=torch.float32)


def _call(**over):
    q, k, v, g, b, w = _inputs()
    args = dict(q=q, k=k, v=v, g=g, b=b, w=w)
    kwargs = {key: over.pop(key) for key in list(over) if key not in args}
    args.update(over)
    return gdn2(*args.values(), **kwargs)


@pytest.mark.parametrize(
    "over,match",
    [
        pytest.param(dict(q=torch.randn(1, 10, 8)), r"q must be a 4-D tensor", id="q-3d"),
        pytest.param(dict(k=torch.randn(1, 10, 2, 16)), r"k must have shape \[1, 10, 2, 8\]", id="k-shape"),
        pytest.param(dict(b=torch.rand(1, 9, 2, 8)), r"b must have shape", id="b-shape"),
        pytest.param(dict(w=torch.rand(1, 10, 2, 5)), r"w must have shape \[1, 10, 2, 4\]", id="w-shape"),
        pytest.param(
            dict(g=torch.zeros(1, 10, 2, 8, dtype=torch.bfloat16)), r"g must have dtype", id="g-bf16"
        ),
        pytest.param(dict(v=torch.ones(1, 10, 2, 4, dtype=torch.int64)), r"v must have dtype", id="v-int"),
        pytest.param(dict(k=torch.randn(1, 10, 2, 8, device="meta")), r"k must be on cpu", id="k-device"),
        pytest.param(dict(scale=-1.0), r"scale must be a positive", id="scale"),
        pytest.param(dict(initial_state=torch.zeros(1, 2, 8, 5)), r"initial_state must have shape", id="h0"),
        pytest.param(
            dict(initial_state=torch.zeros(1, 2, 8, 4, dtype=torch.float16)),
            r"initial_state must have dtype",
            id="h0-dt",
        ),
        pytest.param(
            dict(cu_seqlens=torch.tensor([0, 4, 9])), r"cu_seqlens must rise from 0 to T=10", id="cu-end"
        ),
        pytest.param(dict(cu_seqlens=torch.tensor([0, 6, 4, 10])), r"cu_seqlens must rise", id="cu-order"),
        pytest.param(
            dict(cu_seqlens=torch.tensor([0.0, 10.0])), r"cu_seqlens must be int32 or int64", id="cu-dtype"
        ),
        pytest.param(
            dict(cu_seqlens=torch.tensor([0, 4, 10]), initial_state=torch.zeros(1, 2, 8, 4)),
            r"initial_state must have shape \[2, 2, 8, 4\]",
            id="cu-h0",
        ),
    ],
)
def test_gdn2_rejects(over, match):
    with pytest.raises(ValueError, match=match):
        _call(**over)


def test_cu_seqlens_needs_batch_one():
    q, k, v, g, b, w = (torch.cat([x, x]) for x in _inputs())
    with pytest.raises(ValueError, match=r"B == 1, got B=2"):
        gdn2(q, k, v, g, b, w, cu_seqlens=torch.tensor([0, 10]))


def test_step_rejects_bad_state():
    q, k, v, g, b, w = _inputs()
    with pytest.raises(ValueError, match=r"state must have shape \[1, 2, 8, 4\]"):
        gdn2_step(q, k, v, g, b, w, torch.zeros(2, 2, 8, 4))
    with pytest.raises(ValueError, match=r"state must be a torch.Tensor"):
        gdn2_step(q, k, v, g, b, w, None)
