"""The reader on several GPUs (or several CPU processes): training, batches of questions, one long context.

    DistributedTrainer        DDP training; each rank takes a share of every global batch (`ddp.py`)
    read_parallel             a batch of questions dealt out over the ranks (`reading.py`)
    context_parallel_prefill  one context cut into slices, the GDN-2 cache handed rank to rank (`context.py`)
    two_pass_prefill          the same result with all ranks reading at once, states combined (`two_pass.py`)
    run_workers               spawn N processes in one group and collect their results (`launch.py`)

Launch long jobs with torchrun (`python -m gdn2_model.distributed.train_ddp`); every function here
works with any world size, 1 included, over NCCL (GPUs) or gloo (CPU).
"""

from gdn2_model.distributed.comm import gather_rows, recv_cache, send_cache, slice_bounds
from gdn2_model.distributed.context import (
    ContextParallelOutput,
    context_parallel_extract,
    context_parallel_prefill,
)
from gdn2_model.distributed.ddp import DistributedTrainer, RankRows
from gdn2_model.distributed.launch import Worker, run_workers
from gdn2_model.distributed.reading import ReadRequest, assign_longest_first, read_parallel
from gdn2_model.distributed.two_pass import TwoPassRecurrence, two_pass_prefill

__all__ = [
    "ContextParallelOutput",
    "DistributedTrainer",
    "RankRows",
    "ReadRequest",
    "Worker",
    "assign_longest_first",
    "context_parallel_extract",
    "context_parallel_prefill",
    "gather_rows",
    "read_parallel",
    "recv_cache",
    "run_workers",
    "send_cache",
    "slice_bounds",
    "TwoPassRecurrence",
    "two_pass_prefill",
]
