"""Multi-GPU reader training: `torchrun --nproc-per-node N -m gdn2_model.distributed.train_ddp [train flags]`.

Takes the flags of `python -m gdn2_model.train train` (same named configs, data folder, run folder); each
process trains on its share of every global batch (`DistributedTrainer`). Rank 0 alone logs, writes
`history.jsonl` / `resume.pt` and exports. On CUDA rank r uses GPU `LOCAL_RANK` with NCCL; without GPUs
the ranks run on the CPU with gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

from gdn2_model.distributed.ddp import DistributedTrainer
from gdn2_model.training_cli import add_train_arguments, train_from_args


def _quiet(*_args, **_kw) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="torchrun ... -m gdn2_model.distributed.train_ddp", description=__doc__)
    add_train_arguments(ap)
    a = ap.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        print("error: start this with torchrun (e.g. torchrun --nproc-per-node 2 -m ...)", file=sys.stderr)
        return 2
    # torchrun's contract: it sets LOCAL_RANK / RANK / WORLD_SIZE / MASTER_ADDR for each process it starts
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and a.device != "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    main_rank = dist.get_rank() == 0
    try:
        res = train_from_args(
            a,
            device=f"cuda:{local_rank}" if cuda else "cpu",
            export=a.export if main_rank else None,
            log=print if main_rank else _quiet,
            trainer_cls=DistributedTrainer,
        )
    finally:
        dist.destroy_process_group()
    if main_rank:
        print(json.dumps({**res, "world": int(os.environ.get("WORLD_SIZE", "1"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
