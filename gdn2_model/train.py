"""Train the extractive GDN-2 reader: `python -m gdn2_model.train` (also `rag train`).

Steps:
1. `prepare`: read real text on this machine into a corpus file and train the BPE tokenizer on
   its training side (`gdn2_model/data/corpus.py`, `gdn2_model/tokenizer.py`).
2. `train`: bf16 autocast, AdamW, warmup + cosine LR, a long-context curriculum (sequence length
   grows phase by phase to >= 16k), span loss over candidate tokens. Every `eval_every` steps it
   scores fixed held-out batches (loss, exact span match) and appends to `history.jsonl`;
   `resume.pt` (weights, optimiser, step) is written every `save_every` steps, so a killed run
   continues with `--resume` on exactly the batches it would have seen (batches depend on the
   step only). At the end it exports the checkpoint (sharded safetensors, bf16) with tokenizer,
   config, data recipe and seed, and plots `curves.png`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gdn2_model.prompt import align_end_logits
from gdn2_model.training_data import Phase, ReaderBatches, TaskMix, phase_first_step, span_loss


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded with the checkpoint)."""

    name: str
    arch: str = "gdn2"  # gdn2 | transformer (the same-size SDPA baseline)
    model: dict[str, Any] = field(default_factory=dict)
    curriculum: list[Phase] = field(default_factory=lambda: [Phase(0.0, 512, 2)])
    steps: int = 100
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    mix: TaskMix = field(default_factory=TaskMix)
    eval_every: int = 50
    eval_batches: int = 2
    save_every: int = 100
    bf16: bool = True
    num_workers: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["curriculum"] = [Phase(**p) for p in d.get("curriculum", [])] or [Phase(0.0, 512, 2)]
        if "mix" in d:
            m = dict(d["mix"])
            m["niah_tasks"] = tuple(m.get("niah_tasks", TaskMix().niah_tasks))
            d["mix"] = TaskMix(**m)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gdn2_model(vocab: int, hidden: int, layers: int, heads: int, head_dim: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_heads": heads,
        "head_dim": head_dim,
        "hidden_ratio": 3,
        # the reader's question-match input and look-ahead end head (see GDN2Config); the SDPA baseline
        # gets both too, so the two networks differ only in the token mixer
        "reader_question_match": True,
        "reader_end_shift": True,
    }


# named configs: `tiny` for CPU tests; `default` is the shipped reader (~19M params, ~38 MB in bf16)
NAMED_CONFIGS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        name="tiny",
        model=_gdn2_model(16384, 32, 2, 2, 16),
        curriculum=[Phase(0.0, 256, 2)],
        steps=8,
        lr=3e-3,
        warmup=2,
        eval_every=4,
        eval_batches=1,
        save_every=4,
        bf16=False,
    ),
    "default": TrainConfig(
        name="default",
        model=_gdn2_model(16384, 384, 8, 6, 64),
        curriculum=[Phase(0.0, 2048, 32), Phase(0.2, 4096, 16), Phase(0.4, 8192, 8), Phase(0.65, 16384, 4)],
        steps=1300,
        lr=2e-3,
        warmup=60,
        eval_every=100,
        eval_batches=2,
        save_every=100,
        num_workers=10,
    ),
    # a reader that trains on two CPU cores in under an hour (the fallback when no GPU time is left)
    "cpu-small": TrainConfig(
        name="cpu-small",
        model=_gdn2_model(16384, 128, 2, 2, 64),
        # the CPU reference costs per chunk more than per row: wide batches of short rows
        curriculum=[Phase(0.0, 256, 96), Phase(0.6, 512, 48), Phase(0.85, 1024, 24)],
        steps=450,
        lr=3e-3,
        warmup=20,
        eval_every=75,
        eval_batches=1,
        save_every=25,
        bf16=False,
    ),
}


def named_config(name: str, **overrides: Any) -> TrainConfig:
    """A copy of a named config with fields overridden (None values ignored)."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown config {name!r}; known: {sorted(NAMED_CONFIGS)}")
    cfg = TrainConfig.from_dict(NAMED_CONFIGS[name].to_dict())
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network a config names: `GDN2ForReader` or the same-size SDPA transformer baseline."""
    if cfg.arch == "gdn2":
        from gdn2_model import GDN2Config, GDN2ForReader

        return GDN2ForReader(GDN2Config(**cfg.model))
    if cfg.arch == "transformer":
        from gdn2_model.training_baseline import BaselineConfig, TransformerReader

        m = cfg.model
        base = BaselineConfig(
            m["vocab_size"],
            m["hidden_size"],
            m["num_hidden_layers"],
            m["num_heads"],
            256,
            reader_question_match=m.get("reader_question_match", False),
            reader_end_shift=m.get("reader_end_shift", False),
        )
        # widen the MLP until the parameter count matches the GDN-2 reader of the same config
        target = sum(p.numel() for p in build_model(dataclasses.replace(cfg, arch="gdn2")).parameters())
        probe = sum(p.numel() for p in TransformerReader(base).parameters())
        per_unit = 3 * m["hidden_size"] * m["num_hidden_layers"]
        inter = max(16, 256 + round((target - probe) / per_unit))
        return TransformerReader(dataclasses.replace(base, intermediate_size=inter))
    raise ValueError(f"unknown arch {cfg.arch!r}; expected 'gdn2' or 'transformer'")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warmup, then cosine down to `min_lr_ratio * lr`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def forward_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    bf16: bool,
    net: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict]:
    """Span loss of one batch and the fraction of rows whose argmax start and end are both gold.

    net: what runs the forward when it is not `model` itself (a `DistributedDataParallel` wrapper of it).
    """
    ids = batch["input_ids"]
    with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = (net or model)(ids, question_match=batch["question_match"])
    end_logits = align_end_logits(out.end_logits) if model.config.reader_end_shift else out.end_logits
    loss = span_loss(out.start_logits, end_logits, batch)
    with torch.no_grad():
        cand = batch["candidates"]
        s = out.start_logits.float().masked_fill(~cand, float("-inf")).argmax(-1)
        e = end_logits.float().masked_fill(~cand, float("-inf")).argmax(-1)
        hit = batch["gold_start"].gather(1, s[:, None]) & batch["gold_end"].gather(1, e[:, None])
    return loss, {"span_acc": hit.float().mean().item()}


class Trainer:
    """One training run in `out_dir`: holds the model, optimiser, step and the curves so far.

    The three `_batch_loss` / `_reported` / `_stop_all` hooks and `is_main` are where data-parallel
    training (`gdn2_model.distributed.ddp.DistributedTrainer`) splits the batch and agrees across ranks.
    """

    # the process that writes history, resume.pt and exports (every rank of a DDP run computes)
    is_main: bool = True

    def __init__(
        self, cfg: TrainConfig, train_docs, heldout_docs, tokenizer, out_dir: str | Path, device: str
    ) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        self.tok = tokenizer
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device)
        self.opt = make_optimizer(cfg, self.model)
        self.step = 0
        self.data = ReaderBatches(tokenizer, train_docs, cfg.curriculum, cfg.seed, cfg.mix, cfg.steps)
        # fixed held-out batches at each curriculum length (different seed, held-out documents)
        self.eval_data = ReaderBatches(
            tokenizer, heldout_docs, cfg.curriculum, cfg.seed + 7919, cfg.mix, cfg.steps
        )
        self.history: list[dict[str, Any]] = []

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def save_resume(self) -> Path:
        path = self.out / "resume.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "step": self.step,
                "config": self.cfg.to_dict(),
                "history": self.history,
            },
            tmp,
        )
        tmp.replace(path)
        return path

    def load_resume(self) -> bool:
        path = self.out / "resume.pt"
        if not path.is_file():
            return False
        st = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.step = st["step"]
        self.history = st["history"]
        return True

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        rows: dict[str, float] = {}
        for phase in self.cfg.curriculum:
            losses, accs = [], []
            for i in range(self.cfg.eval_batches):
                # eval batches come from steps of the eval stream inside the phase: fixed across the run
                b = {
                    k: v.to(self.device)
                    for k, v in self.eval_data[phase_first_step(phase, self.cfg.steps) + i].items()
                }
                loss, m = forward_loss(self.model, b, self.cfg.bf16 and self.device.type == "cuda")
                losses.append(loss.item())
                accs.append(m["span_acc"])
            rows[f"eval_loss_{phase.seq_len}"] = sum(losses) / len(losses)
            rows[f"eval_acc_{phase.seq_len}"] = sum(accs) / len(accs)
        self.model.train()
        return rows

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.is_main:
            with open(self.out / "history.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _batch_loss(self, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, dict]:
        """The loss to backpropagate for one training batch, and its metrics."""
        return forward_loss(self.model, batch, bf16)

    def _reported(self, loss: torch.Tensor, metrics: dict, tokens: int) -> tuple[float, float, int]:
        """Loss, span accuracy and tokens trained on so far, as the run reports them."""
        return loss.item(), metrics["span_acc"], tokens

    def _stop_all(self, out_of_time: bool) -> bool:
        """Whether a run with a time limit stops now (one process: its own clock decides)."""
        return out_of_time

    def train(self, steps: int | None = None, log=print, max_minutes: float | None = None) -> None:
        """Run until `steps` (default: the config's) or `max_minutes`; evaluate, save and log on the way."""
        end = min(steps if steps is not None else self.cfg.steps, self.cfg.steps)
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_size=None,
            sampler=range(self.step, end),
            num_workers=self.cfg.num_workers,
            prefetch_factor=4 if self.cfg.num_workers else None,
            persistent_workers=False,
        )
        bf16 = self.cfg.bf16 and self.device.type == "cuda"
        self.model.train()
        t0, tokens = time.time(), 0
        for batch in loader:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.cfg, self.step)
            loss, m = self._batch_loss(batch, bf16)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.step += 1
            tokens += int(batch["lengths"].sum())
            eval_due = self.step % self.cfg.eval_every == 0 or self.step == end
            if self.step % 10 == 0 or eval_due:
                dt = time.time() - t0
                loss_v, acc, all_tokens = self._reported(loss, m, tokens)
                row = {
                    "step": self.step,
                    "loss": loss_v,
                    "span_acc": acc,
                    "grad_norm": float(gn),
                    "lr": lr_at(self.cfg, self.step - 1),
                    "seq_len": batch["input_ids"].shape[1],
                    "tok_per_s": all_tokens / max(dt, 1e-9),
                    "elapsed_s": dt,
                }
                if eval_due:
                    row.update(self.evaluate())
                self._log(row)
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            out_of_time = max_minutes is not None and self._stop_all(time.time() - t0 > max_minutes * 60)
            if out_of_time and self.step % 10:
                loss_v, acc, _ = self._reported(loss, m, tokens)
                self._log({"step": self.step, "loss": loss_v, "span_acc": acc, **self.evaluate()})
            if self.is_main and (self.step % self.cfg.save_every == 0 or self.step == end or out_of_time):
                self.save_resume()
            if out_of_time:
                log(f"stopping at step {self.step}: {max_minutes} minutes are up")
                break

    def export(self, ckpt_dir: str | Path, recipe: dict[str, Any]) -> Path:
        """Write the shippable checkpoint: bf16 safetensors shards (<= 15 MB), tokenizer, configs, recipe."""
        from gdn2_model.training_export import export_checkpoint

        return export_checkpoint(self.model, self.tok, self.cfg, ckpt_dir, recipe, self.history)


def main(argv: list[str] | None = None) -> int:
    from gdn2_model.training_cli import run_cli

    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
