"""Every GDN-2 kernel, launched as each row of the tuning table launches it, compiles for its target
architecture without a GPU (Triton names the target; ptxas ships with it), fits the target's shared
memory and spills no more than its documented bound (`compile_targets.SPILL_BOUND`). The GPU tests run the
sm_90 rows on an H200; this is what stands for the sm_80 and sm_89 rows."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("triton")

from gdn2_kernels.gdn2.compile_targets import compile_for, compile_table, launches, spill_bound  # noqa: E402
from gdn2_kernels.gdn2.tuning import ARCHS, TABLE  # noqa: E402


@pytest.fixture(scope="module")
def compiled():
    """Every distinct launch of every row, compiled for its target, one process per CPU core."""
    return compile_table(ARCHS)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_every_row_compiles_for_its_target(compiled, arch):
    mine = [(bucket, launch, c) for a, bucket, launch, c in compiled if a == arch]
    # every kernel: scores, 3 WY variants, the state pass and its recompute, 6 backward kernels, decode
    assert len(mine) >= 14
    failures = []
    for bucket, launch, c in mine:
        if not c.fits:
            failures.append(f"{bucket} {launch.name}: {c.shared} B shared > {c.shared_limit}")
        if c.spill_bytes > spill_bound(launch.name):
            failures.append(f"{bucket} {launch.name}: {c.spill_bytes} B spilled > {spill_bound(launch.name)}")
    assert not failures, "\n".join(failures)


def test_a_row_too_big_for_the_target_is_caught():
    # four pipeline stages of [64, 128] tiles at V blocks of 64: past the L4's 99 KB of shared memory
    row = dataclasses.replace(TABLE[("sm_89", "wide")], state_stages=4, state_block_v=64)
    state = next(x for x in launches(row) if x.name.startswith("fwd state"))
    assert not compile_for(state, "sm_89").fits
