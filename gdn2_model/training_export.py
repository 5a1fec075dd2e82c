"""Export a trained reader as a shippable checkpoint and plot its training curves.

The folder holds what `Reader.load` needs and what a person needs to reproduce it:
`config.json` + `model*.safetensors` (bf16, shards <= 15 MB) + `tokenizer.json`,
`train_config.json` (named config, seed, curriculum), `recipe.json` (corpus, split, tokenizer),
`history.jsonl` and `curves.png`.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch

from gdn2_model.tokenizer import save_tokenizer

log = logging.getLogger(__name__)

MAX_SHARD = "14MB"


def export_checkpoint(
    model, tokenizer, cfg, ckpt_dir: str | Path, recipe: dict[str, Any], history: list[dict]
) -> Path:
    """Write model, tokenizer, configs, recipe, curves into `ckpt_dir`; returns the folder."""
    out = Path(ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    shipped = copy.deepcopy(model).to("cpu", torch.bfloat16).eval()
    if hasattr(shipped, "save_pretrained"):
        shipped.save_pretrained(out, max_shard_size=MAX_SHARD, safe_serialization=True)
    else:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in shipped.state_dict().items()}, str(out / "model.safetensors")
        )
    save_tokenizer(tokenizer, out)
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    with open(out / "history.jsonl", "w") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    plot_history(history, out / "curves.png")
    return out


def plot_history(history: list[dict], path: str | Path) -> Path | None:
    """Training loss and held-out loss/accuracy per length against step, as a PNG; None without history."""
    if not history:
        return None
    try:
        import matplotlib
    except ImportError:
        log.warning("no training plot: matplotlib is not installed (pip install 'gdn2-rag[train]')")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in history]
    ax1.plot(steps, [r["loss"] for r in history], label="train span loss", lw=1)
    keys = sorted(
        {k for r in history for k in r if k.startswith("eval_")},
        key=lambda k: (k.split("_")[1], int(k.split("_")[-1])),
    )
    for k in keys:
        pts = [(r["step"], r[k]) for r in history if k in r]
        ax = ax1 if k.startswith("eval_loss") else ax2
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=k.replace("eval_", "held-out ")
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("span loss (start + end NLL)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("step")
    ax2.set_ylabel("exact span accuracy")
    ax2.set_ylim(0, 1)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
