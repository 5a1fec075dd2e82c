"""No GDN-2 kernel reads or writes outside the tensors it is given (Triton interpreter, CPU).

On the GPU such an access faults only when the allocator happens to put unmapped memory after a tensor, so
it shows up as an order-dependent failure of whole test runs; here it fails deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPT = Path(__file__).with_name("triton_bounds_cases.py")


@pytest.fixture(scope="module")
def outside(run_interpreted) -> dict:
    return run_interpreted(SCRIPT)


def test_the_check_sees_a_read_past_a_tensor(outside):
    # a kernel reading x[1 : 9] of an 8-element x: exactly one element is outside
    assert outside["self_check"] == 1


def test_every_access_stays_inside_the_launch_tensors(outside):
    cases = {name: n for name, n in outside.items() if name != "self_check"}
    assert cases and all(n == 0 for n in cases.values()), cases
