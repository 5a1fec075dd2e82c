"""`run_workers`: a failing rank stops the group with its traceback, no hang (results by rank are what
every other distributed test reads)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from gdn2_model.distributed import Worker, run_workers


def _sum_worker(w: Worker, fail_rank: int) -> torch.Tensor:
    x = torch.tensor([float(w.rank + 1)])
    dist.all_reduce(x)
    if w.rank == fail_rank:
        raise ValueError(f"rank {w.rank} gives up")
    # the other rank now waits on the failed one: the launcher must not wait for it forever
    dist.barrier()
    return x * torch.ones(2, 2)


def test_a_failing_rank_is_reported_and_the_others_stopped():
    with pytest.raises(RuntimeError, match="rank 1 gives up"):
        run_workers(_sum_worker, 2, 1, timeout_s=120)


def test_bad_arguments_are_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="world=0"):
        run_workers(_sum_worker, 0, -1)
    with pytest.raises(ValueError, match="device_type='tpu'"):
        run_workers(_sum_worker, 1, -1, device_type="tpu")
