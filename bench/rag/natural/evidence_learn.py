"""Study: learn the evidence scorer's weights from written training questions, judge them on the dev set.

The shipped evidence score (gdn2_rag/evidence.py) is `cos + 0.15 lex - 0.02 rank + 0.5 type`, three weights
chosen on the hand-written dev set. `gdn2_model/data/written_questions.jsonl` holds 992 questions written like
a user's over 96 training documents that no evaluation set uses, so weights (and more terms) can be fitted
there and the dev set stays a judge.

    # candidates and their terms, per question (the pipeline's own retrieval, assembly and candidates)
    python bench/rag/natural/evidence_learn.py features --index IDX --set SET --out F.json [--budget 16000]
    # fit a conditional logit (softmax over a question's candidates) on F_train, score on F_test
    python bench/rag/natural/evidence_learn.py fit --train F_train.json --test F_dev.json

SET is an evaluation set (bench/data/natural_*.jsonl) or the written file (its `answer` becomes `answers`).
IDX must hold the set's documents: for the written questions, the natural index plus their 96 sources.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_study import judge  # noqa: E402

# the candidate terms, in the order of a feature vector
TERMS = (
    "cos",  # cosine of question and candidate (MiniLM)
    "lex",  # rare-word overlap, scaled to [0, 1] over the candidates
    "rank",  # the passage's retrieval rank (0-4)
    "type",  # answer_type.type_match of the question's expected kinds
    "cos_prev",  # cosine of the previous candidate of the same passage (0 for the first)
    "cos_next",  # cosine of the next candidate of the same passage (0 for the last)
    "cos_passage_max",  # best cosine of the candidate's passage
    "cos_gap",  # cos minus the best cosine over all candidates
    "dense",  # the passage's dense retrieval score
    "log_chars",  # log of the candidate's length
    "first",  # 1 for a passage's first candidate (a heading, an option's tag line)
)
SHIPPED = {"cos": 1.0, "lex": 0.15, "rank": -0.02, "type": 0.5}


def _questions(path: str) -> list[dict]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            if "answers" not in q:  # a written training question
                q = {**q, "answers": [q["answer"]]}
            out.append(q)
    return out


def features(args) -> None:
    from gdn2_rag import RAG, RAGConfig
    from gdn2_rag import pipeline as pl
    from gdn2_rag.answer_type import expected_types, type_match
    from gdn2_rag.evaluate import resolve_source
    from gdn2_rag.evidence import MAX_EVIDENCE_CHARS, _candidates

    seen = {}
    real = pl.select_evidence

    def spy(question, context, ranked, *a, **kw):
        seen["ctx"] = (context, ranked)
        return real(question, context, ranked, *a, **kw)

    pl.select_evidence = spy
    rag = RAG.open(args.index, config=RAGConfig(use_reader=False, evidence="semantic"))
    index = rag._open_index()
    rows = []
    qs = _questions(args.set)
    for n, q in enumerate(qs, 1):
        ans = rag.ask(q["question"], context_tokens=args.budget)
        context, ranked = seen["ctx"]
        dense = {p.chunk_id: p.dense_score or 0.0 for p in ans.passages}
        cands = _candidates(q["question"], context, ranked)
        if not cands:
            continue
        texts = [context.pieces[pi].text[s:e][:MAX_EVIDENCE_CHARS] for _, pi, s, e, _ in cands]
        vecs = index.embedder.embed([q["question"], *texts])
        cos = (vecs[1:] @ vecs[0]).astype(float)
        kinds = expected_types(q["question"])
        src = resolve_source(q["source"]) if q.get("source") else ""
        present = {seg.chunk_id for p in context.pieces for seg in p.segments}
        ranked_in = [c for c in ranked if c in present]  # what _candidates' ranks count
        best_by_rank: dict[int, float] = {}
        for (rank, *_), c in zip(cands, cos, strict=True):
            best_by_rank[rank] = max(best_by_rank.get(rank, -1.0), c)
        cand_rows = []
        for i, ((rank, pi, s, e, lex), c) in enumerate(zip(cands, cos, strict=True)):
            text = context.pieces[pi].text
            same_prev = i > 0 and cands[i - 1][0] == rank
            same_next = i + 1 < len(cands) and cands[i + 1][0] == rank
            end, ok = judge(q["answers"], src, context.pieces[pi], s, e)
            cand_rows.append(
                {
                    "cos": float(c),
                    "lex": float(lex),
                    "rank": rank,
                    "type": type_match(kinds, text[s:e]),
                    "cos_prev": float(cos[i - 1]) if same_prev else 0.0,
                    "cos_next": float(cos[i + 1]) if same_next else 0.0,
                    "cos_passage_max": best_by_rank[rank],
                    "cos_gap": float(c - cos.max()),
                    "dense": dense.get(ranked_in[rank], 0.0) if rank < len(ranked_in) else 0.0,
                    "log_chars": math.log(max(1, end - s)),
                    "first": 0.0 if same_prev else 1.0,
                    "ok": ok,
                }
            )
        rows.append(
            {
                "question": q["question"],
                "domain": q.get("domain", ""),
                "answerable": bool(q["answers"]),
                "cands": cand_rows,
            }
        )
        if n % 100 == 0:
            print(f"{n}/{len(qs)}", flush=True)
    Path(args.out).write_text(json.dumps(rows))
    print(f"{len(rows)} questions -> {args.out}; shipped weights: {accuracy(rows, shipped_weights()):.3f}")


# ------------------------------------------------------------------------------------------- fitting
def matrix(row: dict) -> np.ndarray:
    return np.array([[c[t] for t in TERMS] for c in row["cands"]], dtype=np.float64)


def shipped_weights() -> np.ndarray:
    return np.array([SHIPPED.get(t, 0.0) for t in TERMS])


def accuracy(rows: list[dict], w: np.ndarray, domain: str | None = None) -> float:
    """Share of the answerable questions whose best-scoring candidate holds the answer in the right file."""
    rows = [r for r in rows if r["answerable"] and (domain is None or r["domain"] == domain)]
    if not rows:
        return float("nan")
    return sum(bool(r["cands"][int(np.argmax(matrix(r) @ w))]["ok"]) for r in rows) / len(rows)


def fit(rows: list[dict], l2: float, steps: int = 600, lr: float = 0.05) -> np.ndarray:
    """Weights maximising the mean log-probability of a question's right candidates (softmax over its
    candidates), with an L2 penalty; questions with no right candidate teach nothing and are skipped."""
    data = [(matrix(r), np.array([c["ok"] for c in r["cands"]], dtype=bool)) for r in rows if r["answerable"]]
    data = [(x, y) for x, y in data if y.any()]
    w = shipped_weights().copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, steps + 1):
        g = l2 * w
        for x, y in data:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            q = np.where(y, p, 0.0)
            q /= q.sum()
            g += (p - q) @ x / len(data)  # gradient of -log sum_{right} p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w


def fit_cmd(args) -> None:
    train = json.loads(Path(args.train).read_text())
    tests = {p: json.loads(Path(p).read_text()) for p in args.test}
    doms = ("legal", "support", "code")
    print("weights".ljust(34) + "".join(f"{Path(p).stem[:22]:>24}" for p in tests))
    variants = {"shipped": shipped_weights()}
    for l2 in args.l2:
        variants[f"fit all terms, l2 {l2}"] = fit(train, l2)
        base = [t for t in TERMS if t in SHIPPED]
        sub = [
            dict(r, cands=[{**c, **{t: 0.0 for t in TERMS if t not in base}} for c in r["cands"]])
            for r in train
        ]
        variants[f"fit shipped terms, l2 {l2}"] = fit(sub, l2)
    for name, w in variants.items():
        line = name.ljust(34)
        for rows in tests.values():
            per = "/".join(f"{accuracy(rows, w, d):.2f}" for d in doms)
            line += f"{accuracy(rows, w):>8.3f} ({per})"
        print(line)
    print(f"train (written) accuracy, shipped {accuracy(train, shipped_weights()):.3f}")
    for name, w in variants.items():
        terms = ", ".join(f"{t} {x:+.3f}" for t, x in zip(TERMS, w, strict=True))
        print(f"{name}: train {accuracy(train, w):.3f}; {terms}")
    if args.out:
        out = {k: dict(zip(TERMS, v.tolist(), strict=True)) for k, v in variants.items()}
        Path(args.out).write_text(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("--index", required=True)
    f.add_argument("--set", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--budget", type=int, default=16000)
    g = sub.add_parser("fit")
    g.add_argument("--train", required=True)
    g.add_argument("--test", nargs="+", required=True)
    g.add_argument("--l2", type=float, nargs="+", default=[0.01, 0.1])
    g.add_argument("--out", default=None)
    a = ap.parse_args()
    features(a) if a.cmd == "features" else fit_cmd(a)


if __name__ == "__main__":
    main()
