"""Data-parallel (DDP) training of the reader: the global batch of each step is split across the ranks.

Every rank builds the same global batch for step s (`ReaderBatches[s]` depends on the step only) and
keeps a contiguous share of its rows (`RankRows`), so a run on N GPUs takes exactly the steps a run on
one GPU takes, on the same data. The gradient of the global batch's mean loss is what DDP's all-reduce
(a mean over ranks) produces when rank r's mean loss is scaled by `rows_r * world / rows` (shares may
differ by a row). Logged loss, accuracy and tokens are reduced over the ranks; only rank 0 writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup
from torch.nn.parallel import DistributedDataParallel

from gdn2_model.distributed.comm import slice_bounds
from gdn2_model.train import TrainConfig, Trainer, forward_loss
from gdn2_model.training_data import Phase

__all__ = ["DistributedTrainer", "RankRows", "check_shares"]


class RankRows(torch.utils.data.Dataset):
    """Rank `rank`'s rows of each global batch of `batches`, plus the global row count (`global_rows`)."""

    def __init__(self, batches: torch.utils.data.Dataset, rank: int, world: int) -> None:
        self.batches = batches
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.batches[step]
        rows = batch["input_ids"].shape[0]
        bounds = slice_bounds(rows, self.world)
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        mine = {k: v[lo:hi] for k, v in batch.items()}
        mine["global_rows"] = torch.tensor(rows)
        return mine


def check_shares(curriculum: Sequence[Phase], world: int) -> None:
    """Raise ValueError when a phase's global batch has fewer rows than there are ranks."""
    small = [p.batch for p in curriculum if p.batch < world]
    if small:
        raise ValueError(
            f"phase batch sizes {small} are smaller than the {world} ranks: "
            "every rank needs at least one row per step"
        )


class DistributedTrainer(Trainer):
    """`Trainer` over the ranks of an initialised process group; same arguments plus `group`.

    Raises ValueError when a curriculum phase has fewer rows per batch than there are ranks.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        train_docs,
        heldout_docs,
        tokenizer,
        out_dir: str | Path,
        device: str,
        group: ProcessGroup | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs an initialised process group (run under torchrun)")
        world = dist.get_world_size(group)
        check_shares(cfg.curriculum, world)
        super().__init__(cfg, train_docs, heldout_docs, tokenizer, out_dir, device)
        self.group = group
        self.rank, self.world = dist.get_rank(group), world
        self.is_main = self.rank == 0
        self.data = RankRows(self.data, self.rank, self.world)
        # eval: every rank scores the same fixed batches on its own replica, so they stay in step
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.model, device_ids=ids, process_group=group)

    def _batch_loss(self, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, dict]:
        rows, total = batch["input_ids"].shape[0], int(batch["global_rows"])
        loss, m = forward_loss(self.model, batch, bf16, net=self.ddp)
        # DDP averages gradients over ranks: weight each share by its rows so the mean is the batch's
        share = rows / total
        return loss * (share * self.world), {"span_acc": m["span_acc"] * share}

    def _reported(self, loss: torch.Tensor, metrics: dict, tokens: int) -> tuple[float, float, int]:
        vals = torch.tensor(
            [loss.item() / self.world, metrics["span_acc"], float(tokens)], dtype=torch.float64
        )
        vals = vals.to(self._comm_device)
        dist.all_reduce(vals, group=self.group)
        return float(vals[0]), float(vals[1]), int(vals[2])

    def _stop_all(self, out_of_time: bool) -> bool:
        flag = torch.tensor([int(out_of_time)], device=self._comm_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return bool(flag.item())

    @property
    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
        return self.device if dist.get_backend(self.group) == "nccl" else torch.device("cpu")
