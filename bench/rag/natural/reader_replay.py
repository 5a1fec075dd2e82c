"""Judge a reader on the natural-question sets without the embedder on the GPU machine.

The index and its MiniLM query embedder live on the CPU machine; the GPU machine has neither. So:

1. `export` (CPU): answer every question as `rag ask --reader` would, with a reader stand-in that records
   the exact pieces the reader would read (the same retrieval, budget and layout), into
   contexts.jsonl.xz;
2. `read` (GPU, or CPU for small budgets): run a reader checkpoint over those pieces, keep its best
   spans (`Reader.extract_spans`, k = FUSION_CANDIDATES) in spans.jsonl;
3. `score` (CPU): answer every question again with a stand-in that replays those spans, so fusion with the
   retrieval rank, citations and `rag eval`'s scoring are exactly the pipeline's; print the table.

    python bench/rag/natural/reader_replay.py export --index IDX --set bench/data/natural_dev.jsonl \
        --budget 16000 --out .natural/ctx16k.jsonl.xz
    python bench/rag/natural/reader_replay.py read --contexts .natural/ctx16k.jsonl.xz --out .natural/sp.jsonl
    python bench/rag/natural/reader_replay.py score --index IDX --set ... --budget 16000 \
        --spans .natural/sp.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import lzma
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


@dataclasses.dataclass(frozen=True)
class _Span:
    piece_index: int
    char_start: int
    char_end: int
    text: str
    score: float


class _StandIn:
    """What ReaderRuntime needs of a loaded reader: the real checkpoint's tokenizer and layout (so the
    budget packs exactly the pieces `rag ask` would), with `extract_spans` replaced by `on_read`."""

    def __init__(self, reader, on_read) -> None:
        self.tokenizer = reader.tokenizer
        self._reader = reader
        self.on_read = on_read
        self.identity = {"name": "replay"}

    def layout(self, repeat_question: bool = False):
        return self._reader.layout(repeat_question)

    def extract_spans(self, question, pieces, k=1, max_answer_tokens=32, **kw):
        return self.on_read(question, pieces)[:k]

    def extract(self, question, pieces, max_answer_tokens=32, **kw):
        return self.extract_spans(question, pieces, k=1)[0]


def _rag(index: str, on_read, checkpoint: str | None):
    """A RAG whose reader is the stand-in for `checkpoint` (default: the shipped reader)."""
    from gdn2_model.readers import load_reader
    from gdn2_rag import RAG, RAGConfig
    from gdn2_rag.reading import ReaderRuntime, default_checkpoint

    runtime = ReaderRuntime(require=True)
    runtime._reader = _StandIn(load_reader(checkpoint or default_checkpoint()), on_read)
    runtime._loaded = True
    rag = RAG(index, config=RAGConfig(require_reader=True, device="cpu"), reader=runtime)
    rag.info()  # opens it: a missing index fails here, not at the first question
    return rag


# evidence lines kept per question by `read` (a v3 reader scores every line it reads)
LINES_KEPT = 40


def _fingerprint(pieces) -> str:
    """What the reader read, so `score` can refuse spans read from a different assembly of the context."""
    h = hashlib.sha1()
    for p in pieces:
        h.update(p.text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


def _questions(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def export(args) -> None:
    rows = []

    def record(question, pieces):
        rows.append(
            {
                "question": question,
                "pieces": [dataclasses.asdict(p) for p in pieces],
                "fingerprint": _fingerprint(pieces),
            }
        )
        return [_Span(0, 0, 1, pieces[0].text[:1], 1.0)]

    rag = _rag(args.index, record, args.checkpoint)
    t = time.perf_counter()
    for q in _questions(args.set):
        rag.ask(q["question"], context_tokens=args.budget)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # xz with a large window: the contexts of a set share most documents, so this packs them ~20x
    with lzma.open(args.out, "wt", preset=9 | lzma.PRESET_EXTREME) as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{len(rows)} contexts at {args.budget} tokens in {time.perf_counter() - t:.1f} s -> {args.out}")


def read(args) -> None:
    import torch

    from gdn2_model.prompt import ContextPiece
    from gdn2_model.readers import load_reader
    from gdn2_rag.reading import FUSION_CANDIDATES, default_checkpoint

    device = "cuda" if torch.cuda.is_available() else "cpu"
    reader = load_reader(args.checkpoint or default_checkpoint(), device=device, base_path=args.base)
    out, times = [], []
    with lzma.open(args.contexts, "rt") as f:
        for n, line in enumerate(f):
            if args.limit is not None and n >= args.limit:
                break
            row = json.loads(line)
            pieces = [ContextPiece(**p) for p in row["pieces"]]
            t = time.perf_counter()
            spans = reader.extract_spans(row["question"], pieces, k=FUSION_CANDIDATES)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            found = {
                "question": row["question"],
                "fingerprint": row.get("fingerprint"),
                "spans": [dataclasses.asdict(s) for s in spans],
            }
            if hasattr(reader, "score_lines"):  # v3: its evidence lines and its no-answer probability too
                found["lines"] = [list(t) for t in reader.score_lines(row["question"], pieces)[:LINES_KEPT]]
                found["no_answer"] = reader.no_answer_prob(row["question"], pieces)
            out.append(found)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in out))
    times.sort()
    print(f"{len(out)} questions read on {device}: p50 {times[len(times) // 2] * 1000:.0f} ms -> {args.out}")


def score(args) -> None:
    from gdn2_rag.evaluate import evaluate, format_table, load_eval_set

    spans = {}
    for line in Path(args.spans).read_text().splitlines():
        row = json.loads(line)
        spans[row["question"]] = (row.get("fingerprint"), [_Span(**s) for s in row["spans"]])

    def replay(question, pieces):
        fingerprint, found = spans[question]
        if fingerprint != _fingerprint(pieces):
            raise SystemExit(f"the context of {question!r} is not the one that was read: export, read again")
        return found

    rag = _rag(args.index, replay, args.checkpoint)
    confidence = {}

    def ask(question):
        answer = rag.ask(question, context_tokens=args.budget)
        confidence[question] = answer.score
        return answer

    report = evaluate(ask, load_eval_set(args.set))
    print(format_table(report))
    if args.json:
        out = report.to_dict()
        for row in out["rows"]:  # the answer's confidence, for reliability.py
            row["score"] = confidence.get(row["question"])
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("export", "read", "score"):
        p = sub.add_parser(name)
        p.add_argument("--checkpoint", default=None, help="reader checkpoint (default: the shipped one)")
        if name != "read":
            p.add_argument("--index", required=True)
            p.add_argument("--set", required=True)
            p.add_argument("--budget", type=int, default=16000)
        if name == "export":
            p.add_argument("--out", required=True)
        if name == "read":
            p.add_argument("--contexts", required=True)
            p.add_argument("--out", required=True)
            p.add_argument("--base", default=None, help="MiniLM folder for a v3 reader (default: package)")
            p.add_argument("--limit", type=int, default=None, help="read only the first N contexts")
        if name == "score":
            p.add_argument("--spans", required=True)
            p.add_argument("--json", default=None)
    args = ap.parse_args()
    {"export": export, "read": read, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
