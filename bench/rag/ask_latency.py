"""`ask` latency per stage (retrieve, assemble, read): warm library calls and the cold CLI call.

Three modes:

    # CPU, whole pipeline, 16k-token contexts (builds the index from real text on first use)
    .venv/bin/python bench/rag/ask_latency.py cpu --index /tmp/ask-bench-index --context-tokens 16000

    # CPU: retrieve + assemble a 100k-token context with the reader's tokenizer, save it for the GPU
    .venv/bin/python bench/rag/ask_latency.py dump --index /tmp/ask-bench-index --context-tokens 100000 \
        --out bench/results/ctx100k.json

    # GPU machine (no embedder there): time the read stage on the carried context
    PYTHONPATH=. python3 bench/rag/ask_latency.py read --context bench/results/ctx100k.json --device cuda

The GPU warm-ask figure is CPU retrieve + CPU assemble (measured in `dump`, recorded in the JSON) + GPU
read (measured in `read`); the read stage includes the reader's tokenisation and prompt layout.
The corpus: every file in /usr/share/common-licenses plus a fixed list of Python standard-library
modules (legal prose and code), ingested with the real all-MiniLM-L6-v2 embedder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# the cold figure of `read` counts from here (stdlib loaded): heavy imports, reader load, first (JIT) read
PROCESS_T0 = time.perf_counter()

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

QUESTION = "What must you give the recipients when you distribute copies of the Program?"
STDLIB_MODULES = ("argparse", "typing", "subprocess", "pathlib", "logging/__init__", "json/decoder", "shutil")


def corpus_paths() -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    paths = [str(p) for p in sorted(Path("/usr/share/common-licenses").iterdir()) if p.is_file()]
    return paths + [str(lib / f"{m}.py") for m in STDLIB_MODULES if (lib / f"{m}.py").is_file()]


def ensure_index(index: Path) -> None:
    from gdn2_rag import RAG

    if (index / "CURRENT").exists():
        return
    t0 = time.perf_counter()
    report = RAG.open(index, create=True).ingest(corpus_paths(), progress=False)
    print(f"ingest ({time.perf_counter() - t0:.0f} s): {report.summary()}", flush=True)


def p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def run_cpu(args) -> dict:
    """Cold CLI call once, then warm library asks (one warm-up, `repeats` timed)."""
    from gdn2_rag import RAG, RAGConfig

    index = Path(args.index)
    ensure_index(index)
    cmd = [
        sys.executable,
        "-c",
        "import gdn2_cli; gdn2_cli.main()",
        "ask",
        args.question,
        "--index",
        str(index),
    ]
    cmd += ["--context-tokens", str(args.context_tokens), "--json", "--device", "cpu"]
    if args.model:
        cmd += ["--model", args.model]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    cold = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"cold CLI call failed: {out.stderr.strip()}")
    cold_answer = json.loads(out.stdout)

    rag = RAG.open(index, config=RAGConfig(device="cpu", model_path=args.model))
    rag.ask(args.question, context_tokens=args.context_tokens)
    stages: dict[str, list[float]] = {"retrieve": [], "assemble": [], "read": [], "total": []}
    answer = None
    # distinct questions when given (a reader may keep its last read; the same question again costs nothing)
    questions = [args.question] * args.repeats
    if args.questions:
        rows = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()]
        questions = [r["question"] for r in rows if r.get("answers")][: args.repeats]
    for question in questions:
        t = time.perf_counter()
        answer = rag.ask(question, context_tokens=args.context_tokens)
        wall = time.perf_counter() - t
        stages["retrieve"].append(answer.timings.retrieve_s)
        stages["assemble"].append(answer.timings.assemble_s)
        stages["read"].append(answer.timings.read_s)
        stages["total"].append(wall)
    result = {
        "device": "cpu",
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "context_tokens_budget": args.context_tokens,
        "context_tokens": answer.context_tokens,
        "token_counter": answer.token_counter,
        "pieces": answer.context_pieces,
        "mode": answer.mode,
        "model": answer.model.get("name"),
        "answer": answer.text,
        "citations": [c.location for c in answer.citations],
        "warm_ms_p50": {k: p50(v) for k, v in stages.items()},
        "cold_cli_s": cold,
        "cold_cli_mode": cold_answer["mode"],
    }
    print(
        f"\nask latency, CPU ({os.cpu_count()} cores, load {result['load_average_1m']:.1f}), "
        f"mode {answer.mode}"
    )
    print(f"context {answer.context_tokens} tokens ({answer.token_counter}), {answer.context_pieces} pieces")
    print(f"{'stage':<12}{'warm p50 ms':>14}")
    for k, v in result["warm_ms_p50"].items():
        print(f"{k:<12}{v:>14.1f}")
    print(f"{'cold CLI':<12}{cold * 1000:>14.1f}   (`rag ask --json`, new process, reader load included)")
    print(f"answer: {answer.text[:100]!r} @ {result['citations'][:1]}")
    return result


def run_dump(args) -> dict:
    """Retrieve + assemble a context on CPU with the reader's tokenizer; save pieces and CPU timings."""
    from gdn2_rag import RAG, RAGConfig

    index = Path(args.index)
    ensure_index(index)
    tokenizer_json = None
    if args.random_reader:
        # no trained checkpoint yet: count with a BPE of the reader's vocabulary size trained on the corpus,
        # shipped inside the dump so the GPU side builds a random-weight reader around the same tokenizer
        from gdn2_model.tokenizer import train_tokenizer
        from gdn2_rag.reading import ReaderRuntime
        from gdn2_rag.tokens import TokenizerCounter

        texts = [Path(p).read_text(errors="replace") for p in corpus_paths()]
        tok = train_tokenizer(texts, vocab_size=16384)
        tokenizer_json = tok.to_str()
        runtime = ReaderRuntime(device="cpu", enabled=False)
        runtime.token_counter = lambda: TokenizerCounter(tok)
        rag = RAG(index, config=RAGConfig(device="cpu"), reader=runtime)
    else:
        rag = RAG.open(index, config=RAGConfig(device="cpu", model_path=args.model, require_reader=True))
        rag.reader.load()  # budgets are counted in the reader's own layout, which needs it loaded
    rag.search(args.question)  # warm: index and embedder
    from gdn2_rag.assemble import assemble_context

    runs, warm_assemble = [], []
    cache: dict = {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        retrieved = rag._retrieve(args.question, 781 * args.context_tokens // 100_000 + 1, _no_filter())
        t_ret = time.perf_counter() - t
        scores = {p.chunk_id: p.score for p in retrieved.passages}
        counter = rag.reader.token_counter()
        # first sight of every chunk (no count cache) ...
        t = time.perf_counter()
        ctx = assemble_context(args.question, retrieved.chunks, scores, args.context_tokens, counter)
        runs.append((t_ret, time.perf_counter() - t))
        # ... and a long-lived RAG's path, whose chunk counts are cached after the first ask
        t = time.perf_counter()
        assemble_context(
            args.question, retrieved.chunks, scores, args.context_tokens, counter, count_cache=cache
        )
        warm_assemble.append(time.perf_counter() - t)
    data = {
        "question": args.question,
        "budget": args.context_tokens,
        "tokens": ctx.tokens,
        "token_counter": ctx.counter,
        "cpu_retrieve_ms_p50": p50([r for r, _ in runs]),
        "cpu_assemble_ms_p50": p50([a for _, a in runs]),
        "cpu_assemble_cached_ms_p50": p50(warm_assemble[1:] or warm_assemble),
        "cpu_load_average_1m": os.getloadavg()[0],
        "pieces": [{"header": p.header, "text": p.text} for p in ctx.pieces],
        "tokenizer_json": tokenizer_json,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data))
    print(
        f"context: {ctx.tokens} tokens ({ctx.counter}) in {len(ctx.pieces)} pieces -> {args.out}; "
        f"CPU retrieve p50 {data['cpu_retrieve_ms_p50']:.1f} ms, "
        f"assemble p50 {data['cpu_assemble_ms_p50']:.1f} ms "
        f"({data['cpu_assemble_cached_ms_p50']:.1f} ms with counts cached)"
    )
    return data


def _no_filter():
    from gdn2_rag.filters import MetadataFilter

    return MetadataFilter()


def run_read(args) -> dict:
    """Time the reader's `extract` (tokenise + layout + read + span search) on a saved context."""
    import torch

    from gdn2_model.prompt import ContextPiece, build_reader_input
    from gdn2_model.reader_v3 import ReaderV3, build_v3_input
    from gdn2_model.readers import load_reader
    from gdn2_rag.reading import default_checkpoint

    data = json.loads(Path(args.context).read_text())
    pieces = [ContextPiece(text=p["text"], header=p["header"]) for p in data["pieces"]]
    model_path = args.model or default_checkpoint()
    if data.get("tokenizer_json"):
        model_path = _random_reader(data["tokenizer_json"], args.random_config)
    t = time.perf_counter()
    reader = load_reader(model_path, device=args.device, base_path=args.base)
    load_s = time.perf_counter() - t
    if isinstance(reader, ReaderV3):
        lay_out = lambda: build_v3_input(reader.tokenizer, data["question"], pieces, reader.cfg)
    else:
        lay_out = lambda: build_reader_input(reader.tokenizer, data["question"], pieces)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    reader.extract(data["question"], pieces)
    sync()
    cold_s = time.perf_counter() - PROCESS_T0
    times, layout = [], []
    for i in range(args.repeats + 1):  # the first is a warm-up
        question = data["question"] + " " * (i % 2)  # v3 keeps its last read: never the same key twice
        t = time.perf_counter()
        lay_out()
        layout.append(time.perf_counter() - t)
        t = time.perf_counter()
        span = reader.extract(question, pieces)
        sync()
        times.append(time.perf_counter() - t)
    times, layout = times[1:], layout[1:]
    ri = lay_out()
    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    read_ms = p50(times)
    total = data["cpu_retrieve_ms_p50"] + data["cpu_assemble_ms_p50"] + read_ms
    result = {
        "card": card,
        "reader": reader.identity,
        "random_weights": bool(data.get("tokenizer_json")),
        "prompt_tokens": len(ri),
        "load_s": load_s,
        "cold_process_s": cold_s,
        "read_ms_p50": read_ms,
        "read_ms_min": min(times) * 1000,
        "layout_ms_p50": p50(layout),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None,
        "cpu_retrieve_ms_p50": data["cpu_retrieve_ms_p50"],
        "cpu_assemble_ms_p50": data["cpu_assemble_ms_p50"],
        "warm_ask_ms": total,
        "answer": span.text,
    }
    print(
        f"\nread stage on {card}: reader {reader.identity.get('name')} "
        f"({reader.identity.get('params')} params)"
    )
    print(f"prompt {len(ri)} tokens; reader load {load_s:.2f} s; cold process to first answer {cold_s:.2f} s")
    print(f"{'stage':<34}{'p50 ms':>10}")
    print(f"{'retrieve (CPU, from dump)':<34}{data['cpu_retrieve_ms_p50']:>10.1f}")
    print(f"{'assemble (CPU, from dump)':<34}{data['cpu_assemble_ms_p50']:>10.1f}")
    print(f"{'read: tokenise + layout':<34}{result['layout_ms_p50']:>10.1f}")
    print(f"{'read: extract (all of it)':<34}{read_ms:>10.1f}")
    print(f"{'warm ask = retrieve+assemble+read':<34}{total:>10.1f}")
    cached = data.get("cpu_assemble_cached_ms_p50")
    if cached is not None:
        result["warm_ask_cached_counts_ms"] = data["cpu_retrieve_ms_p50"] + cached + read_ms
        print(f"{'  same, chunk counts cached':<34}{result['warm_ask_cached_counts_ms']:>10.1f}")
    print(f"answer: {span.text[:100]!r}")
    return result


def _random_reader(tokenizer_json: str, config_name: str) -> str:
    """A random-weight reader of a named training config, saved with the dump's tokenizer.

    Latency does not depend on the weights, so this times the shipped architecture before (or without)
    its trained checkpoint; results say so.
    """
    import tempfile

    import torch
    from tokenizers import Tokenizer

    from gdn2_model.tokenizer import save_tokenizer
    from gdn2_model.train import build_model, named_config

    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix="random-reader-"))
    net = build_model(named_config(config_name))
    net.save_pretrained(str(path))
    save_tokenizer(Tokenizer.from_str(tokenizer_json), path)
    return str(path)


def run_random_reader(args) -> dict:
    """Write a random-weight reader (named config, corpus-trained BPE) to a folder, for CPU runs."""
    from gdn2_model.tokenizer import train_tokenizer

    texts = [Path(p).read_text(errors="replace") for p in corpus_paths()]
    path = _random_reader(train_tokenizer(texts, vocab_size=16384).to_str(), args.random_config)
    print(path)
    return {"path": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("cpu", "dump"):
        p = sub.add_parser(name)
        p.add_argument("--index", default="/tmp/ask-bench-index")
        p.add_argument("--context-tokens", type=int, default=16_000 if name == "cpu" else 100_000)
        p.add_argument("--question", default=QUESTION)
        p.add_argument("--repeats", type=int, default=5)
        if name == "cpu":
            p.add_argument("--questions", default=None, help="JSONL of questions asked in turn (timed asks)")
        p.add_argument("--model", default=None, help="reader checkpoint folder (default: the shipped reader)")
        if name == "dump":
            p.add_argument("--out", required=True)
            p.add_argument(
                "--random-reader", action="store_true", help="no checkpoint: count with a corpus-trained BPE"
            )
    p = sub.add_parser("random-reader")
    p.add_argument("--random-config", default="default")
    p = sub.add_parser("read")
    p.add_argument("--context", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default=None)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--random-config", default="default", help="named training config of a random reader")
    p.add_argument("--base", default=None, help="v3: MiniLM folder (no package)")
    for p in sub.choices.values():
        p.add_argument("--json-out", default=None)
    args = ap.parse_args()
    modes = {"cpu": run_cpu, "dump": run_dump, "read": run_read, "random-reader": run_random_reader}
    result = modes[args.mode](args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
