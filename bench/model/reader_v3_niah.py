"""RULER-style needle tasks for reader v3 at long contexts (issue 18: S-NIAH-1 and MK-NIAH-1 at 100k >= 95 %).

Samples come from `gdn2_model.data.niah.NeedleTaskMaker` (the same tasks `reader_eval.py` scores for v2),
sized in reader v3's own WordPiece context tokens (`V3Layout`); haystack documents are the prepared v3
training file's documents (the needles are synthetic, so the haystack only has to be real text). Needles
are placed at depths spread evenly over the context, as RULER does. `acc`: the reader's best span is the
needle's value exactly; `contains`: the span holds it (RULER's string-match scoring).

    python bench/model/reader_v3_niah.py --ckpt gdn2_model/checkpoints/v3 --lengths 100000 --n 8 \
        --tasks s-niah-1,mk-niah-1 --device cpu --out bench/results/raw/reader_v3_niah_cpu.json
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gdn2_model.data.corpus import Document  # noqa: E402
from gdn2_model.data.niah import NeedleTaskMaker  # noqa: E402
from gdn2_model.readers import load_reader  # noqa: E402


def load_docs(path: Path, limit: int = 800) -> list[Document]:
    docs = []
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line).get("doc")
            if row and len(row["text"]) > 2000:
                docs.append(Document(row["doc_id"], row["domain"], row["title"], row["text"]))
                if len(docs) >= limit:
                    break
    return docs


def sized_sample(maker, reader, rng_seed: str, task: str, tokens: int, depth: float):
    """A sample whose context is at most `tokens` reader tokens (haystacks come in ~1k-token pieces)."""
    layout = reader.layout()
    target = int(tokens * 0.95)
    for _ in range(30):
        s = maker.sample(random.Random(rng_seed), task, target, depth=depth)
        n = sum(layout.piece_tokens(p.header, p.text) for p in s.pieces)
        if n <= tokens:
            return s, n
        target = int(target * 0.97)
    raise RuntimeError(f"could not size a {task} sample to {tokens} tokens")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(ROOT / "gdn2_model/checkpoints/v3"))
    ap.add_argument("--data", default=str(ROOT / "runs/v3/data.jsonl.xz"))
    ap.add_argument("--lengths", default="100000")
    ap.add_argument("--tasks", default="s-niah-1,mk-niah-1")
    ap.add_argument("--n", type=int, default=8, help="samples per task and length (depths evenly spread)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--base", default=None, help="MiniLM folder where the package is not installed")
    a = ap.parse_args()

    reader = load_reader(a.ckpt, device=a.device, base_path=a.base)
    maker = NeedleTaskMaker(load_docs(Path(a.data)))
    rows = []
    for L in [int(x) for x in a.lengths.split(",")]:
        for task in a.tasks.split(","):
            right, holds, times = 0, 0, []
            for i in range(a.n):
                s, n = sized_sample(maker, reader, f"{task}-{L}-{i}", task, L, depth=(i + 0.5) / a.n)
                if a.device.startswith("cuda") and not i:  # kernel compilation is not reading time
                    reader.extract(s.question + " ", s.pieces)
                t0 = time.perf_counter()
                got = reader.extract(s.question, s.pieces).text
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                ok = got == s.answers[0].text
                right += ok
                holds += s.answers[0].text in got
                print(
                    f"{task} L={L} #{i} tokens={n} depth={(i + 0.5) / a.n:.2f} ok={ok} got={got!r}",
                    flush=True,
                )
            rows.append(
                {
                    "task": task,
                    "tokens": L,
                    "n": a.n,
                    "acc": right / a.n,
                    "contains": holds / a.n,
                    "read_s": sorted(times)[len(times) // 2],  # the median read
                }
            )
    print(f"\n{'task':<11}{'tokens':>8}{'n':>4}{'acc':>7}{'contains':>9}{'read s p50':>12}")
    for r in rows:
        print(
            f"{r['task']:<11}{r['tokens']:>8}{r['n']:>4}{r['acc']:>7.2f}{r['contains']:>9.2f}{r['read_s']:>12.2f}"
        )
    if a.out:
        meta = {"ckpt": a.ckpt, "device": a.device, "identity": reader.identity}
        Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
