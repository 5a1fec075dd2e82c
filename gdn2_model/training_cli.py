"""Command line of `python -m gdn2_model.train`: `prepare` (corpus + tokenizer) and `train`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gdn2_model.data.corpus import build_corpus, load_corpus, split_of
from gdn2_model.tokenizer import DEFAULT_VOCAB, load_tokenizer, save_tokenizer, train_tokenizer


def prepare(out_dir: str | Path, vocab_size: int = DEFAULT_VOCAB, seed: int = 0, scale: float = 1.0) -> dict:
    """Build `corpus.jsonl.xz` from this machine's text and train `tokenizer.json` on its training side."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = {"legal": int(6e6 * scale), "support": int(16e6 * scale), "code": int(11e6 * scale)}
    counts = build_corpus(out / "corpus.jsonl.xz", budget, seed=seed)
    docs = load_corpus(out / "corpus.jsonl.xz", "train")
    save_tokenizer(train_tokenizer([d.text for d in docs], vocab_size), out)
    recipe = {
        "corpus": "corpus.jsonl.xz",
        "documents": counts,
        "char_budget": budget,
        "seed": seed,
        "vocab_size": vocab_size,
        "split": "sha1(doc_id) % 10 == 0 -> heldout",
    }
    (out / "data_recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


def train_run(
    config: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    steps: int | None = None,
    resume: bool = False,
    device: str | None = None,
    export: str | Path | None = None,
    arch: str | None = None,
    num_workers: int | None = None,
    seed: int | None = None,
    max_minutes: float | None = None,
    stop_at: int | None = None,
    log=print,
    trainer_cls: type | None = None,
) -> dict:
    """Train a named config on the prepared data in `data_dir`; export a checkpoint if asked.

    trainer_cls: a `Trainer` subclass to run (the DDP entry passes `DistributedTrainer`).
    """
    import torch

    from gdn2_model.train import Trainer, named_config

    trainer_cls = trainer_cls or Trainer

    cfg = named_config(config, steps=steps, arch=arch, num_workers=num_workers, seed=seed)
    data = Path(data_dir)
    if not (data / "corpus.jsonl.xz").is_file():
        raise FileNotFoundError(
            f"no corpus.jsonl.xz in {data}: run `python -m gdn2_model.train prepare --out {data}`"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    docs = load_corpus(data / "corpus.jsonl.xz")
    train_docs = [d for d in docs if split_of(d.doc_id) == "train"]
    held = [d for d in docs if split_of(d.doc_id) == "heldout"]
    trainer = trainer_cls(cfg, train_docs, held, load_tokenizer(data), out_dir, device)
    if resume and trainer.load_resume():
        log(f"resumed at step {trainer.step}")
    log(f"{cfg.name}: arch={cfg.arch} params={trainer.params:,} device={device} steps={cfg.steps}")
    trainer.train(steps=stop_at, log=log, max_minutes=max_minutes)
    result = {"step": trainer.step, "params": trainer.params, "history_rows": len(trainer.history)}
    if export:
        recipe_file = data / "data_recipe.json"
        recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
        recipe.update({"train_documents": len(train_docs), "heldout_documents": len(held)})
        result["checkpoint"] = str(trainer.export(export, recipe))
    return result


def export_run(out_dir: str | Path, data_dir: str | Path, export: str | Path) -> Path:
    """Export the weights of `out_dir/resume.pt` (e.g. after a crash at the end of training)."""
    import torch

    from gdn2_model.train import TrainConfig, build_model

    st = torch.load(Path(out_dir) / "resume.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(st["config"])
    model = build_model(cfg)
    model.load_state_dict(st["model"])
    from gdn2_model.training_export import export_checkpoint

    recipe_file = Path(data_dir) / "data_recipe.json"
    recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    recipe["exported_at_step"] = st["step"]
    return export_checkpoint(model, load_tokenizer(data_dir), cfg, export, recipe, st["history"])


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """The flags of `train` (shared with the multi-GPU entry `gdn2_model.distributed.train_ddp`)."""
    # what to train
    t.add_argument("--config", default="default", help="named config (gdn2_model/train.py NAMED_CONFIGS)")
    t.add_argument("--arch", choices=["gdn2", "transformer"], default=None)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    # where
    t.add_argument("--data", default="data", help="folder written by `prepare`")
    t.add_argument("--out", default="runs/default", help="run folder (history, resume.pt)")
    t.add_argument("--export", default=None, help="write the finished checkpoint here")
    t.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    t.add_argument("--device", default=None)
    t.add_argument("--num-workers", type=int, default=None)
    t.add_argument(
        "--stop-at", type=int, default=None, help="stop at this step (schedule still spans --steps)"
    )
    t.add_argument(
        "--max-minutes", type=float, default=None, help="stop (and export) after this much training"
    )


def train_from_args(a: argparse.Namespace, **overrides) -> dict:
    """`train_run` with the flags of `add_train_arguments`; `overrides` replace or add keywords (DDP)."""
    kw = dict(
        steps=a.steps,
        resume=a.resume,
        device=a.device,
        export=a.export,
        arch=a.arch,
        num_workers=a.num_workers,
        seed=a.seed,
        max_minutes=a.max_minutes,
        stop_at=a.stop_at,
    )
    return train_run(a.config, a.data, a.out, **{**kw, **overrides})


def run_cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gdn2_model.train", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the corpus and tokenizer from this machine's text")
    p.add_argument(
        "--out", default="data", help="folder for corpus.jsonl.xz, tokenizer.json, data_recipe.json"
    )
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the per-domain character budgets")
    add_train_arguments(sub.add_parser("train", help="train a named config"))
    x = sub.add_parser("export", help="export a checkpoint from a run folder's resume.pt")
    x.add_argument("--out", required=True, help="run folder holding resume.pt")
    x.add_argument("--data", default="data")
    x.add_argument("--export", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "export":
        print(export_run(a.out, a.data, a.export))
        return 0
    if a.cmd == "prepare":
        print(json.dumps(prepare(a.out, a.vocab_size, a.seed, a.scale), indent=2))
        return 0
    print(json.dumps(train_from_args(a)))
    return 0
