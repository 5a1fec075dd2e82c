"""Reader speed and memory, 4k to 100k tokens: GDN-2 (one pass, streamed) vs the same-size SDPA transformer.

    python bench/model/reader_speed.py [--ckpt GDN2_CKPT --ckpt TRANSFORMER_CKPT] [--lengths ...]

Without checkpoints both networks come from the `default` named config with random weights (speed
and memory do not depend on the weights). bf16, batch 1, `torch.inference_mode`, CUDA events;
median of `--repeats` after one warm-up; peak memory is `max_memory_allocated` above the weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402


def _models(ckpts: list[str], device: str):
    from gdn2_model.reader import Reader
    from gdn2_model.train import build_model, named_config

    if ckpts:
        for ck in ckpts:
            r = Reader.load(ck, device=device)
            yield Path(ck).name, r.net, r.streams
        return
    for arch in ("gdn2", "transformer"):
        net = build_model(named_config("default", arch=arch)).to(device, torch.bfloat16).eval()
        yield f"{arch} (default config, random init)", net, arch == "gdn2"


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**30


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", action="append", default=[])
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536, 102400])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--segment", type=int, default=8192)
    ap.add_argument("--out", default="reader_speed.json")
    a = ap.parse_args(argv)
    from gdn2_model import streaming_prefill

    rows = []
    for name, net, streams in _models(a.ckpt, "cuda"):
        vocab = net.config.vocab_size
        for T in a.lengths:
            ids = torch.randint(16, vocab, (1, T), device="cuda")
            variants = [("one pass", lambda ids=ids, net=net: net(ids))]
            if streams:
                variants.append(
                    (f"streamed {a.segment}", lambda ids=ids, net=net: streaming_prefill(net, ids, a.segment))
                )
            for vname, fn in variants:
                try:
                    with torch.inference_mode():
                        ms, gib = _time(fn, a.repeats)
                    row = {
                        "model": name,
                        "variant": vname,
                        "tokens": T,
                        "ms": round(ms, 2),
                        "peak_gib": round(gib, 3),
                    }
                except torch.OutOfMemoryError:
                    row = {"model": name, "variant": vname, "tokens": T, "ms": None, "peak_gib": "OOM"}
                    torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row), flush=True)
        del net
        torch.cuda.empty_cache()
    Path(a.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    print(f"\n{'model':44s} {'variant':16s} {'tokens':>7s} {'ms':>9s} {'peak GiB':>9s}")
    for r in rows:
        print(
            f"{r['model'][:44]:44s} {r['variant']:16s} {r['tokens']:7d} "
            f"{str(r['ms']):>9s} {str(r['peak_gib']):>9s}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
