"""GPU smoke test of reader training: step time, memory and data rate per curriculum phase, both archs.

    python bench/model/reader_smoke.py --data data [--config default]

For each phase of the named config's curriculum and each architecture it runs a few real
optimiser steps (bf16 autocast) on real batches and prints ms/step, tokens/s and peak GiB, plus
how long one batch takes to build on one CPU core, so the run length can be set before the real run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from gdn2_model.data.corpus import load_corpus  # noqa: E402
from gdn2_model.tokenizer import load_tokenizer  # noqa: E402
from gdn2_model.train import build_model, forward_loss, make_optimizer, named_config  # noqa: E402
from gdn2_model.training_data import ReaderBatches  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--config", default="default")
    ap.add_argument("--archs", nargs="+", default=["gdn2", "transformer"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write {arch: {seq_len: ms_per_step}} here")
    a = ap.parse_args(argv)
    data = Path(a.data)
    docs = load_corpus(data / "corpus.jsonl.xz", "train")
    tok = load_tokenizer(data)
    rows = []
    for arch in a.archs:
        cfg = named_config(a.config, arch=arch)
        torch.manual_seed(0)
        model = build_model(cfg).cuda()
        opt = make_optimizer(cfg, model)
        for ph in cfg.curriculum:
            ds = ReaderBatches(tok, docs, [dataclasses.replace(ph, start=0.0)], seed=0)
            t0 = time.time()
            batches = [ds[i] for i in range(a.steps + 1)]
            build_s = (time.time() - t0) / len(batches)
            torch.cuda.reset_peak_memory_stats()
            times = []
            for b in batches:
                b = {k: v.cuda() for k, v in b.items()}
                torch.cuda.synchronize()
                t0 = time.time()
                loss, _ = forward_loss(model, b, bf16=True)
                opt.zero_grad()
                loss.backward()
                opt.step()
                torch.cuda.synchronize()
                times.append(time.time() - t0)
            ms = 1000 * sorted(times[1:])[len(times[1:]) // 2]
            row = (
                arch,
                ph.seq_len,
                ph.batch,
                ms,
                ph.seq_len * ph.batch / ms * 1000,
                torch.cuda.max_memory_allocated() / 2**30,
                build_s,
                loss.item(),
            )
            rows.append(row)
            print("row", row, flush=True)
        del model, opt
        torch.cuda.empty_cache()
    print(
        f"\n{'arch':12s}{'seq':>7s}{'batch':>6s}{'ms/step':>9s}{'tok/s':>10s}"
        f"{'GiB':>7s}{'build s':>9s}{'loss':>7s}"
    )
    for r in rows:
        print(f"{r[0]:12s}{r[1]:7d}{r[2]:6d}{r[3]:9.1f}{r[4]:10.0f}{r[5]:7.2f}{r[6]:9.2f}{r[7]:7.2f}")
    if a.json:
        table: dict[str, dict[int, float]] = {}
        for r in rows:
            table.setdefault(r[0], {})[r[1]] = r[3]
        Path(a.json).write_text(json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
