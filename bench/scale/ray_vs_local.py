"""Ray engine vs local engine on a ~300-file corpus of this machine, with the real MiniLM embedder.

    PYTHONPATH=$PWD python bench/scale/ray_vs_local.py --out bench/results/raw/scale_ray.json

1. Same index: a local ingest and a Ray ingest (a local 2-CPU Ray, 2 workers) of the same files;
   every chunk row (id, path, text, hashes, lines) must be equal, and the dense top-10 of each
   natural question (bench/data/natural_dev.jsonl) must name the same chunk ids.
2. Embedding throughput, side by side on the same texts (the corpus's chunk texts, cycled to
   --texts): the local engine with torch pinned to 1 thread, then the Ray engine with 1 worker and
   with 2 workers (1 torch thread each), repeated --rounds times in that order. Reported per run:
   wall time of the whole embed step (actor start and model load included) and the steady rate
   (texts between the first and the last finished batch over the time between them). Batches of
   --batch texts, sorted by length as an ingest sorts them. The CPU seconds the embedding actors
   used are read from /proc: on a machine shared with other work (Linux autogroup scheduling gives
   each session, not each process, its share) wall-clock scaling is capped by the share, the CPU
   seconds per text are not. Last, the same batches on an embedder that only sleeps 0.5 s per batch
   show how many batches Ray runs at once.

The files: the 300 smallest of bench/rag/natural/corpus.py's list (licenses, man pages, Python modules;
0.48 MB), small enough for a 2-core machine shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def corpus_files() -> list[str]:
    cmd = [sys.executable, str(ROOT / "bench/rag/natural/corpus.py")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    files = [f for f in out.stdout.split("\n") if f]
    return sorted(sorted(files, key=lambda f: (Path(f).stat().st_size, f))[:300])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def snapshot(index_dir: Path, queries: list[str]):
    """Every chunk (all its fields), the dense top-10 ids of each query, every vector by chunk id."""
    from gdn2_ingest import Index

    with Index.open(index_dir) as ix:
        ids = ix.chunk_ids()
        rows = [tuple(vars(c).values()) for c in ix.get_chunks(ids.tolist())]
        top = [[i for i, _ in ix.search_dense(q, 10)] for q in queries]
        vecs = ix.vectors(ids)
    return rows, top, vecs


class CpuSampler:
    """CPU seconds (user+sys) used by this process and by Ray's embedding actors during a run, read
    from /proc every 0.2 s (the actors exit when their dataset is done; what an actor used before it
    was first seen, a fraction of its model load, is not counted)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (CPU seconds first seen, last seen)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.own0 = time.process_time()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self.stop.wait(0.2):
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    if b"_EmbedWorker" not in (d / "cmdline").read_bytes():
                        continue
                    f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    now = (int(f[11]) + int(f[12])) / tick
                    # an actor of the previous run still exiting counts only what it uses from here
                    first, _ = self.seen.get(int(d.name), (now, now))
                    self.seen[int(d.name)] = (first, now)
                except OSError:
                    continue

    def __enter__(self) -> CpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.own = time.process_time() - self.own0


def timed_embed(engine, batches: list[list[str]]) -> dict:
    t0 = time.perf_counter()
    done = []
    n = 0
    with CpuSampler() as cpu:
        for b, vecs in engine.embed(batches):
            n += len(vecs)
            done.append((time.perf_counter() - t0, len(batches[b])))
    wall = time.perf_counter() - t0
    steady = None
    if len(done) > 2:
        span = done[-1][0] - done[0][0]
        steady = sum(k for _, k in done[1:]) / span
    # CPU seconds of the embedding: the actors' for Ray (model load included), this process's for local
    cpu_s = sum(b - a for a, b in cpu.seen.values()) if cpu.seen else cpu.own
    return {"texts": n, "wall_s": round(wall, 2), "rate_wall": round(n / wall, 1),
            "rate_steady": round(steady, 1) if steady else None, "cpu_s": round(cpu_s, 1),
            "actors": len(cpu.seen), "load": load()}  # fmt: skip


class SleepEmbedder:
    """0.5 s per batch and no CPU: shows how many batches Ray runs at once, whatever the load."""

    max_tokens = 256

    def identity(self) -> dict:
        return {"name": "sleep", "dim": 4, "max_tokens": 256, "fingerprint": "sleep"}

    def load_tokenizer(self):
        from gdn2_ingest.embed import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder().load_tokenizer()

    def embed(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.5)
        return np.ones((len(texts), 4), np.float32) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--texts", type=int, default=768, help="texts per throughput run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-index", action="store_true", help="only the throughput part")
    ap.add_argument("--texts-from", type=Path, help="with --skip-index: an index whose chunk texts to embed")
    ap.add_argument("--batch", type=int, default=32, help="texts per embedding batch (one actor call)")
    ap.add_argument("--ray-niceness", type=int, default=0, help="niceness of Ray's worker processes")
    ap.add_argument("--no-local", action="store_true", help="throughput: only Ray with 1 and 2 workers")
    args = ap.parse_args()

    import ray
    import torch

    from gdn2_ingest import Index, IngestConfig, ingest_paths
    from gdn2_ingest.embed import SentenceTransformerEmbedder, TokenCounter
    from gdn2_ingest.engines.local import LocalEngine
    from gdn2_ingest.engines.ray_engine import RayEngine

    files = corpus_files()
    questions = [json.loads(x)["question"] for x in (ROOT / "bench/data/natural_dev.jsonl").open()]
    res: dict = {"machine": "2-core CPU (this dev machine)", "cpus": os.cpu_count(), "files": len(files),
                 "corpus_bytes": sum(Path(f).stat().st_size for f in files)}  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    # as RayEngine starts a local Ray (workers at niceness 0; --ray-niceness 15 is Ray's default)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _system_config={"worker_niceness": args.ray_niceness})  # fmt: skip
    base = {"device": "cpu", "dtype": "float32", "lock_timeout": 5}

    # 1. same index
    if not args.skip_index:
        runs = {}
        for name, cfg in [("local", IngestConfig(**base)),
                          ("ray-2", IngestConfig(**base, engine="ray", engine_workers=2))]:  # fmt: skip
            before = load()
            t0 = time.perf_counter()
            rep = ingest_paths(tmp / name, files, cfg, progress=False)
            runs[name] = {"seconds": round(time.perf_counter() - t0, 1), "chunks": rep.chunks_total,
                          "embedded": rep.chunks_embedded, "skipped": len(rep.skipped),
                          "stages": {k: round(v, 1) for k, v in rep.stage_seconds.items()},
                          "load_before": before, "load_after": load()}  # fmt: skip
            print(name, runs[name], flush=True)
        rows_l, top_l, vec_l = snapshot(tmp / "local", questions)
        rows_r, top_r, vec_r = snapshot(tmp / "ray-2", questions)
        res["index"] = {
            "runs": runs,
            "rows_equal": rows_l == rows_r,
            "chunks": len(rows_l),
            "queries": len(questions),
            "top10_equal_queries": sum(a == b for a, b in zip(top_l, top_r, strict=True)),
            "max_abs_vector_diff": float(np.abs(vec_l - vec_r).max()),
        }
        print("index", {k: v for k, v in res["index"].items() if k != "runs"}, flush=True)
        save(args.out, res)
        with Index.open(tmp / "local") as ix:
            texts = [c.text for c in ix.get_chunks(ix.chunk_ids().tolist())]
    else:
        # an index built before (1.): its chunk texts; the index part of --out is kept
        if args.out and args.out.is_file():
            res = {**json.loads(args.out.read_text()), **{k: v for k, v in res.items() if k != "index"}}
        with Index.open(args.texts_from) as ix:
            texts = [c.text for c in ix.get_chunks(ix.chunk_ids().tolist())]

    # 2. throughput, side by side
    pool = sorted(texts, key=len)
    chosen = [pool[i % len(pool)] for i in range(0, args.texts * 7, 7)][: args.texts]
    chosen.sort(key=len)
    step = args.batch
    batches = [chosen[i : i + step] for i in range(0, len(chosen), step)]
    emb = SentenceTransformerEmbedder(device="cpu", dtype="float32")
    counter = TokenCounter(emb.load_tokenizer())
    runs = []
    if args.skip_index:
        runs = res.get("throughput", [])
    first = 1 + max((x["round"] for x in runs), default=-1)
    for r in range(first, first + args.rounds):
        if not args.no_local:
            torch.set_num_threads(1)
            local = LocalEngine(IngestConfig(**base), emb, counter)
            runs.append({"engine": "local-1thread", "round": r, **timed_embed(local, batches)})
            print(runs[-1], flush=True)
        # alternate which goes first, so a change of load hits both alike
        for w in (1, 2) if r % 2 == 0 else (2, 1):
            eng = RayEngine(IngestConfig(**base, engine="ray", engine_workers=w), emb.max_tokens)
            runs.append({"engine": f"ray-{w}worker", "round": r, "worker_niceness": args.ray_niceness,
                         **timed_embed(eng, batches)})  # fmt: skip
            eng.close()
            print(runs[-1], flush=True)
        res["throughput"] = runs
        res["torch_threads_per_worker"] = 1
        save(args.out, res)
    # the same batches on an embedder that only sleeps: Ray's concurrency without the CPU contention
    sleeps = []
    for w in (1, 2):
        eng = RayEngine(IngestConfig(embedder_factory=SleepEmbedder, engine="ray", engine_workers=w), 256)
        sleeps.append({"engine": f"ray-{w}worker-sleep0.5", **timed_embed(eng, batches)})
        eng.close()
        print(sleeps[-1], flush=True)
    res["sleep_check"] = sleeps
    save(args.out, res)
    ray.shutdown()


def save(out: Path | None, res: dict) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
