"""Evaluate trained readers: RULER-style NIAH and held-out extractive QA, with a retrieval-only baseline.

    python bench/model/reader_eval.py --ckpt CKPT [--ckpt BASELINE_CKPT ...] --data data --out results.json

Samples come from held-out documents only (the split of gdn2_model/data/corpus.py) with fixed seeds, so
every checkpoint reads exactly the same inputs. Scores:

- NIAH (per task and length, query-first and RULER's question-last layout): exact match of the best
  span with the needle value; `mv-niah` is the fraction of the 4 values among the 4 best spans;
  `mq-niah` the fraction of the 4 keys answered right, one question each.
- QA (per domain and length): exact match and F1 (SQuAD normalisation) and evidence@1 (the answer
  comes from the evidence piece).
- retrieval-only: the best passage by BM25 against the question, then its best sentence by
  `gdn2_rag.extractive.best_span` (what the pipeline answers without a reader), same metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gdn2_model.data.corpus import load_corpus  # noqa: E402
from gdn2_model.data.niah import TASKS, NeedleTaskMaker  # noqa: E402
from gdn2_model.data.qa import QATaskMaker  # noqa: E402
from gdn2_model.data.sample import Sample  # noqa: E402
from gdn2_model.prompt import build_reader_input  # noqa: E402
from gdn2_model.tokenizer import load_tokenizer  # noqa: E402
from gdn2_rag.evaluate import exact_match, f1_score  # noqa: E402
from gdn2_rag.extractive import best_span  # noqa: E402

_TOKEN = re.compile(r"\w+")


def retrieval_only_answer(question: str, sample: Sample) -> tuple[int, str]:
    """Retrieval-only answer: best piece by BM25, then its best sentence; returns (piece, text)."""

    def toks(s: str) -> list[str]:
        return [t.lower() for t in _TOKEN.findall(s)]

    q = set(toks(question))

    def bm25(docs: list[list[str]]) -> list[float]:
        n = len(docs)
        avg = sum(map(len, docs)) / max(1, n)
        df = Counter(t for d in docs for t in set(d))
        out = []
        for d in docs:
            tf = Counter(d)
            s = 0.0
            for t in q:
                if tf[t]:
                    idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    s += idf * tf[t] * 2.2 / (tf[t] + 1.2 * (0.25 + 0.75 * len(d) / max(avg, 1)))
            out.append(s)
        return out

    scores = bm25([toks(p.header + " " + p.text) for p in sample.pieces])
    best = max(range(len(scores)), key=scores.__getitem__)
    # the pipeline's own retrieval-only answer: the best-matching sentence (line, for code) of that passage
    text = sample.pieces[best].text
    s, e, _ = best_span(question, text, by_lines=sample.domain == "code")
    return best, text[s:e].strip()


def _fits(tok, s: Sample, L: int) -> bool:
    """Every gold answer (and every multi-query answer) survives the token budget L."""
    answers = [(s.question, s.answers)] + list(s.meta.get("queries", []))
    for q, golds in answers:
        ri = build_reader_input(tok, q, s.pieces, max_tokens=L)
        if any(ri.token_span(a.piece, a.char_start, a.char_end) is None for a in golds):
            return False
    return True


def _fitted(make, tok, L: int) -> Sample:
    """A sample from `make(target_tokens)` whose answers fit in L tokens (target shrinks until they do)."""
    target = int(L * 0.92)
    for _ in range(20):
        s = make(target)
        if _fits(tok, s, L):
            return s
        target = int(target * 0.93)
    raise RuntimeError(f"could not fit a sample into {L} tokens")


def make_sets(
    data: Path, lengths: list[int], n_niah: dict[int, int], n_qa: dict[int, int], qa_lengths, seed=123
):
    docs = load_corpus(data / "corpus.jsonl.xz", "heldout")
    tok = load_tokenizer(data)
    niah, qa = NeedleTaskMaker(docs), QATaskMaker(docs)
    sets = {"niah": {}, "qa": {}}
    for L in lengths:
        for task in TASKS:
            rng = random.Random(f"{seed}-{task}-{L}")
            n = n_niah[L]
            # depths spread evenly over the context, as in RULER
            sets["niah"][(task, L)] = [
                _fitted(lambda t, i=i, r=rng, k=task, n=n: niah.sample(r, k, t, depth=(i + 0.5) / n), tok, L)
                for i in range(n)
            ]
    for L in qa_lengths:
        for dom in ("legal", "support", "code"):
            rng = random.Random(f"{seed}-qa-{dom}-{L}")
            sets["qa"][(dom, L)] = [
                _fitted(lambda t, r=rng, d=dom: qa.sample(r, t, d), tok, L) for _ in range(n_qa[L])
            ]
    return sets


def score_niah(reader, s: Sample, L: int, layout: str) -> float:
    kw = {"max_tokens": L, "layout": layout}
    if s.task == "mv-niah":
        spans = reader.extract_spans(s.question, s.pieces, k=4, **kw)
        return len({sp.text for sp in spans} & {a.text for a in s.answers}) / len(s.answers)
    if s.task == "mq-niah":
        right = 0
        for q, answers in s.meta["queries"]:
            right += reader.extract(q, s.pieces, **kw).text == answers[0].text
        return right / len(s.meta["queries"])
    return float(reader.extract(s.question, s.pieces, **kw).text == s.answers[0].text)


def run_reader(name: str, reader, sets, layouts: list[str], log, question_last_max: int = 1 << 30) -> dict:
    res = {"niah": {}, "qa": {}}
    for (task, L), samples in sets["niah"].items():
        for layout in layouts:
            if layout == "question_last" and question_last_max < L:
                continue
            t0 = time.time()
            acc = sum(score_niah(reader, s, L, layout) for s in samples) / len(samples)
            res["niah"][f"{task}|{L}|{layout}"] = acc
            log(f"{name} niah {task:10s} L={L:6d} {layout:13s} acc={acc:.3f} ({time.time() - t0:.1f}s)")
    for (dom, L), samples in sets["qa"].items():
        em = f1 = ev = 0.0
        for s in samples:
            sp = reader.extract(s.question, s.pieces, max_tokens=L)
            gold = [a.text for a in s.answers]
            em += exact_match(sp.text, gold)
            f1 += f1_score(sp.text, gold)
            ev += sp.piece_index == s.answers[0].piece
        n = len(samples)
        res["qa"][f"{dom}|{L}"] = {"em": em / n, "f1": f1 / n, "evidence_at_1": ev / n, "n": n}
        log(f"{name} qa {dom:8s} L={L:6d} EM={em / n:.3f} F1={f1 / n:.3f} ev@1={ev / n:.3f}")
    return res


def run_retrieval_only(sets) -> dict:
    res = {}
    for (dom, L), samples in sets["qa"].items():
        em = f1 = ev = 0.0
        for s in samples:
            piece, line = retrieval_only_answer(s.question, s)
            gold = [a.text for a in s.answers]
            em += exact_match(line, gold)
            f1 += f1_score(line, gold)
            ev += piece == s.answers[0].piece
        n = len(samples)
        res[f"{dom}|{L}"] = {"em": em / n, "f1": f1 / n, "evidence_at_1": ev / n, "n": n}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", action="append", required=True, help="checkpoint folder (repeat for baselines)")
    ap.add_argument("--data", default="data")
    ap.add_argument("--lengths", type=int, nargs="*", default=[4096, 16384, 65536, 102400])
    ap.add_argument("--qa-lengths", type=int, nargs="+", default=[4096, 102400])
    ap.add_argument("--n-short", type=int, default=40, help="samples per NIAH task at <= 16k")
    ap.add_argument("--n-long", type=int, default=10, help="samples per NIAH task at > 16k")
    ap.add_argument("--n-qa-short", type=int, default=100)
    ap.add_argument("--n-qa-long", type=int, default=20)
    ap.add_argument("--layouts", nargs="+", default=["query_first", "question_last"])
    ap.add_argument("--question-last-max", type=int, default=16384, help="longest length for question-last")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="reader_eval.json")
    a = ap.parse_args(argv)
    from gdn2_model.reader import Reader

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.time()
    n_niah = {L: a.n_short if L <= 16384 else a.n_long for L in a.lengths}
    n_qa = {L: a.n_qa_short if L <= 16384 else a.n_qa_long for L in a.qa_lengths}
    sets = make_sets(Path(a.data), a.lengths, n_niah, n_qa, a.qa_lengths)
    log(f"built eval sets in {time.time() - t0:.1f}s")
    out = {"retrieval_only": run_retrieval_only(sets), "readers": {}}
    for k, v in out["retrieval_only"].items():
        log(f"retrieval-only qa {k}: {v}")
    for ck in a.ckpt:
        reader = Reader.load(ck, device=a.device)
        name = f"{Path(ck).name}"
        out["readers"][name] = {
            "identity": reader.identity,
            **run_reader(name, reader, sets, a.layouts, log, a.question_last_max),
        }
        Path(a.out).write_text(json.dumps(out, indent=2))
    Path(a.out).write_text(json.dumps(out, indent=2))
    log(f"done in {time.time() - t0:.1f}s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
