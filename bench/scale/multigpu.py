"""Issue 21: the reader on N GPUs against 1 GPU in one call: DDP training, context-parallel reading, ask.

    python bench/scale/multigpu.py                      # all GPUs of this host (1 GPU: the 1-GPU column only)
    python bench/scale/multigpu.py --gpus 2 --json $OUT/multigpu.json
    python bench/scale/multigpu.py --cpu --gpus 2 --small   # smoke run: 2 gloo processes on the CPU

For world = 1 and world = N it spawns that many processes (one per GPU, NCCL) and measures, in each:
1. train: DDP steps of the shipped reader's architecture (`default` config) on fixed, pre-built global
   batches (data building is kept out of the timing): tokens/s, and the global loss after the same steps;
2. context: one long context (question + real text up to `--cp-tokens`) read with the GDN-2 cache handed
   rank to rank (`context_parallel_prefill`) and all at once (`two_pass_prefill`): time, the best span
   and the largest logit difference against 1-GPU streaming;
3. ask: `--ask-questions` questions, each with a `--ask-tokens` context, dealt out by `read_parallel`
   (layout + reading + span scoring, the reader's whole share of `ask`): questions/s.
Then it prints one table (N vs 1 and the ratio) and writes the raw numbers as JSON if asked.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gdn2_model.data.corpus import Document  # noqa: E402
from gdn2_model.distributed import (  # noqa: E402
    DistributedTrainer,
    RankRows,
    ReadRequest,
    Worker,
    context_parallel_prefill,
    read_parallel,
    run_workers,
    two_pass_prefill,
)
from gdn2_model.prompt import ContextPiece, align_end_logits, build_reader_input  # noqa: E402
from gdn2_model.reader import DEFAULT_CHECKPOINT, Reader, best_spans  # noqa: E402
from gdn2_model.tokenizer import load_tokenizer  # noqa: E402
from gdn2_model.train import named_config  # noqa: E402
from gdn2_model.training_data import Phase, ReaderBatches  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """Sizes of the three measurements (the same for every world size)."""

    device_type: str = "cuda"
    train_config: str = "default"
    train_seq_len: int = 4096
    train_batch: int = 16
    train_warmup_steps: int = 3
    train_steps: int = 20
    cp_tokens: int = 400_000
    ask_questions: int = 64
    ask_tokens: int = 100_000
    segment_len: int = 32768
    # the reader checkpoint ("": the shipped one); its tokenizer also lays out the training batches
    checkpoint: str = ""

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint) if self.checkpoint else DEFAULT_CHECKPOINT


SMALL = dict(
    train_config="tiny",
    train_seq_len=256,
    train_batch=4,
    train_warmup_steps=1,
    train_steps=3,
    cp_tokens=1500,
    ask_questions=4,
    ask_tokens=400,
    segment_len=512,
)


def _documents() -> list[Document]:
    """Real text that exists wherever Python does: the standard library's modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 20_000)
    return [Document(str(p), "code", p.name, p.read_text(errors="replace")) for p in files]


@functools.cache
def _passages(tok) -> list[tuple[ContextPiece, int]]:
    """The stdlib modules cut into ~4k-character passages, each with its token count."""
    out = []
    for d in _documents():
        for s in range(0, len(d.text), 4000):
            out.append(ContextPiece(d.text[s : s + 4000], f"{d.title} @{s}"))
    counts = [len(e.ids) for e in tok.encode_batch([p.text for p in out], add_special_tokens=False)]
    return list(zip(out, counts, strict=True))


def _pieces(tok, tokens: int, shift: int = 0) -> list[ContextPiece]:
    """Context pieces of about `tokens` reader tokens, a different mix for each `shift`."""
    passages = _passages(tok)
    out, n, i = [], 0, shift
    while n < tokens:
        piece, count = passages[i % len(passages)]
        out.append(piece)
        n += count + 8
        i += 7
    return out


class FixedBatches(torch.utils.data.Dataset):
    """Pre-built global batches by step (so the timing measures training, not data building)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.batches[step % len(self.batches)]


def _train_cfg(plan: Plan):
    steps = plan.train_warmup_steps + plan.train_steps
    return named_config(
        plan.train_config,
        curriculum=[Phase(0.0, plan.train_seq_len, plan.train_batch)],
        steps=steps,
        warmup=1,
        eval_every=10**9,
        eval_batches=1,
        save_every=10**9,
        num_workers=0,
    )


def build_batches(plan: Plan) -> bytes:
    cfg = _train_cfg(plan)
    tok = load_tokenizer(plan.checkpoint_dir)
    data = ReaderBatches(tok, _documents(), cfg.curriculum, cfg.seed, cfg.mix, cfg.steps)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, sampler=range(cfg.steps), num_workers=min(8, os.cpu_count() or 1)
    )
    buf = io.BytesIO()
    torch.save(list(loader), buf)
    return buf.getvalue()


def _sync(w: Worker) -> None:
    if w.device.type == "cuda":
        torch.cuda.synchronize(w.device)
    dist.barrier()


def measure_train(w: Worker, plan: Plan, batches: list, out_dir: str) -> dict:
    cfg = _train_cfg(plan)
    docs = _documents()
    tr = DistributedTrainer(cfg, docs, docs, load_tokenizer(plan.checkpoint_dir), out_dir, str(w.device))
    fixed = FixedBatches(batches)
    tr.data, tr.eval_data = RankRows(fixed, w.rank, w.world), fixed
    quiet = lambda *_: None  # noqa: E731
    tr.train(steps=plan.train_warmup_steps, log=quiet)
    _sync(w)
    t0 = time.perf_counter()
    tr.train(log=quiet)
    _sync(w)
    wall = time.perf_counter() - t0
    # the trainer's own clock stops before the end-of-run evaluation (every rank scores the whole
    # held-out batch, which does not shrink with N); its tokens are the real (unpadded) ones of all ranks
    last = tr.history[-1]
    return {
        "tokens_per_s": last["tok_per_s"],
        "seconds": last["elapsed_s"],
        "wall_with_eval_s": wall,
        "steps": cfg.steps,
        "loss": last["loss"],
        "eval_loss": last[f"eval_loss_{plan.train_seq_len}"],
    }


def _read_once(w: Worker, plan: Plan, reader: Reader, method: str, ids, match) -> tuple[float, object]:
    def run(n: int | None):
        i, m = (ids, match) if n is None else (ids[:, :n], match[:, :n])
        if method == "two-pass":
            return two_pass_prefill(reader.net, i, question_match=m)
        return context_parallel_prefill(reader.net, i, question_match=m, segment_len=plan.segment_len)

    run(min(ids.shape[1], 8192 * w.world))  # warm-up: kernel autotuning on a prefix
    _sync(w)
    t0 = time.perf_counter()
    out = run(None)
    _sync(w)
    return time.perf_counter() - t0, out


def measure_context(w: Worker, plan: Plan, reader: Reader) -> dict:
    pieces = _pieces(reader.tokenizer, plan.cp_tokens)
    question = "Which function parses the command line arguments?"
    ri = build_reader_input(reader.tokenizer, question, pieces)
    ids = torch.from_numpy(ri.input_ids).to(w.device)[None]
    match = torch.from_numpy(ri.question_match).to(w.device)[None]
    res: dict = {"tokens": len(ri)}
    for method in ("hand-off", "two-pass"):
        seconds, out = _read_once(w, plan, reader, method, ids, match)
        start, end = out.start_logits[0].cpu(), align_end_logits(out.end_logits[0].cpu())
        span = best_spans(ri, pieces, start, end, k=1)[0]
        res[method] = {
            "seconds": seconds,
            "span": [span.piece_index, span.char_start, span.char_end],
            "span_text": span.text[:60],
            "start_logits": start if w.is_main else None,
        }
    return res


def measure_ask(w: Worker, plan: Plan, reader: Reader) -> dict:
    questions = [f"What does the function number {i} return?" for i in range(plan.ask_questions)]
    requests = [
        ReadRequest(q, _pieces(reader.tokenizer, plan.ask_tokens, shift=i)) for i, q in enumerate(questions)
    ]
    read_parallel(reader, requests[: w.world])  # warm-up
    _sync(w)
    t0 = time.perf_counter()
    answers = read_parallel(reader, requests)
    _sync(w)
    dt = time.perf_counter() - t0
    return {
        "questions": len(requests),
        "seconds": dt,
        "questions_per_s": len(requests) / dt,
        "answers": [[(s.piece_index, s.char_start, s.char_end) for s in a] for a in answers],
    }


def measure_all(w: Worker, plan: Plan, batches_blob: bytes, out_dir: str) -> dict:
    batches = torch.load(io.BytesIO(batches_blob), weights_only=False)
    res = {"world": w.world, "train": measure_train(w, plan, batches, f"{out_dir}/w{w.world}")}
    reader = Reader.load(plan.checkpoint_dir, device=str(w.device))
    res["context"] = measure_context(w, plan, reader)
    res["ask"] = measure_ask(w, plan, reader)
    if w.device.type == "cuda":
        res["peak_gib"] = torch.cuda.max_memory_allocated(w.device) / 2**30
    return res


def _table(one: dict, many: dict | None) -> str:
    n = many["world"] if many else None

    def row(name: str, a: float, b: float | None, fmt: str, better: str) -> str:
        if b is None:
            return f"| {name} | {a:{fmt}} | - | - |"
        if better == "same":
            return f"| {name} | {a:{fmt}} | {b:{fmt}} | difference {b - a:+.2g} |"
        ratio = b / a if better == "higher" else a / b
        return f"| {name} | {a:{fmt}} | {b:{fmt}} | {ratio:.2f}x |"

    get = (lambda *k: _dig(many, *k)) if many else (lambda *k: None)
    lines = [
        f"| measurement | 1 GPU | {n or '-'} GPUs | speed-up |",
        "| --- | --- | --- | --- |",
        row(
            "DDP training, tokens/s",
            one["train"]["tokens_per_s"],
            get("train", "tokens_per_s"),
            ",.0f",
            "higher",
        ),
        row("  loss after the same global steps", one["train"]["loss"], get("train", "loss"), ".4f", "same"),
        row(
            "  held-out loss after them", one["train"]["eval_loss"], get("train", "eval_loss"), ".4f", "same"
        ),
        row(
            f"read one {one['context']['tokens']:,}-token context, hand-off, s",
            one["context"]["hand-off"]["seconds"],
            get("context", "hand-off", "seconds"),
            ".3f",
            "lower",
        ),
        row(
            f"  two-pass on {n or '-'} GPUs vs 1 GPU streaming, s",
            one["context"]["hand-off"]["seconds"],
            get("context", "two-pass", "seconds"),
            ".3f",
            "lower",
        ),
        row(
            "ask (reader part), questions/s",
            one["ask"]["questions_per_s"],
            get("ask", "questions_per_s"),
            ".2f",
            "higher",
        ),
    ]
    return "\n".join(lines)


def _dig(d: dict, *keys: str):
    for k in keys:
        d = d[k]
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=None, help="N (default: every GPU of this host)")
    ap.add_argument("--cpu", action="store_true", help="run the ranks on the CPU with gloo (smoke test)")
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--work", default="/tmp/gdn2-multigpu", help="scratch folder for the training runs")
    for f in dataclasses.fields(Plan):
        if f.name != "device_type":
            ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None)
    a = ap.parse_args(argv)
    device_type = "cpu" if a.cpu else "cuda"
    if device_type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; pass --cpu for a smoke run on gloo", file=sys.stderr)
        return 2
    n = a.gpus or (torch.cuda.device_count() if device_type == "cuda" else 2)
    plan = Plan(device_type=device_type, **(SMALL if a.small else {}))
    plan = dataclasses.replace(
        plan, **{f.name: getattr(a, f.name) for f in dataclasses.fields(Plan) if getattr(a, f.name, None)}
    )
    t0 = time.perf_counter()
    blob = build_batches(plan)
    steps = plan.train_warmup_steps + plan.train_steps
    print(f"built {steps} global batches in {time.perf_counter() - t0:.1f} s")
    results = {}
    for world in sorted({1, n}):
        t0 = time.perf_counter()
        ranks = run_workers(measure_all, world, plan, blob, a.work, device_type=device_type, timeout_s=1800)
        results[world] = ranks[0]
        # the answer must not depend on the rank that reports it
        results[world]["ranks_agree"] = all(
            r["context"][m]["span"] == ranks[0]["context"][m]["span"]
            for r in ranks
            for m in ("hand-off", "two-pass")
        )
        print(f"world {world}: {time.perf_counter() - t0:.1f} s")
    one, many = results[1], results.get(n) if n > 1 else None
    ref = one["context"]["hand-off"]
    for r in results.values():
        for m in ("hand-off", "two-pass"):
            c = r["context"][m]
            c["max_start_logit_diff_vs_1gpu"] = (c["start_logits"] - ref["start_logits"]).abs().max().item()
            c["same_span_as_1gpu"] = c["span"] == ref["span"]
    if many:
        many["ask"]["same_answers_as_1gpu"] = one["ask"]["answers"] == many["ask"]["answers"]
    device = torch.cuda.get_device_name(0) if device_type == "cuda" else "CPU (gloo)"
    print(f"\n{device}; plan: {plan}\n")
    print(_table(one, many))
    print(f"\n1-GPU reference span: {ref['span_text']!r}")
    for world, r in results.items():
        for m in ("hand-off", "two-pass"):
            c = r["context"][m]
            print(
                f"world {world} {m}: {c['seconds']:.3f} s, same span as 1 GPU streaming: "
                f"{c['same_span_as_1gpu']}, max |start logit diff| {c['max_start_logit_diff_vs_1gpu']:.3g}"
            )
        print(f"world {world}: ranks agree: {r['ranks_agree']}, peak {r.get('peak_gib', 0):.2f} GiB")
    if many:
        print(f"ask: same answers on {n} GPUs as on 1: {many['ask']['same_answers_as_1gpu']}")
    if a.json:
        for r in results.values():
            for m in ("hand-off", "two-pass"):
                r["context"][m].pop("start_logits", None)
            r["ask"].pop("answers", None)
        Path(a.json).write_text(
            json.dumps(
                {
                    "device": device,
                    "plan": dataclasses.asdict(plan),
                    **{str(k): v for k, v in results.items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
