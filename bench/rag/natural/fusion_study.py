"""Study: does the v3 reader's evidence-line score improve the choice of the evidence sentence?

For every question of a set, the pipeline's own retrieval and assembly (as `reader_replay.py export` did), the
evidence candidates of `gdn2_rag.evidence` with their cosine / lexical / rank terms, and the v3 reader's line
probabilities and spans from `reader_replay.py read`. Writes one row per candidate (features + whether it
holds
an accepted answer in the question's file) to a JSON file that `fusion_fit.py` fits weights on.

    python bench/rag/natural/fusion_study.py --index IDX --set bench/data/natural_dev.jsonl --budget 16000 \
        --read .natural/v3/v3_dev_16000.jsonl --out .natural/v3/study_dev_16000.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_fit import accuracy  # noqa: E402
from reader_replay import _fingerprint, _questions, _rag, _Span  # noqa: E402


def judge(answers: list[str], src: str, piece, start: int, end: int) -> tuple[int, bool]:
    """A candidate piece.text[start:end] as `select_evidence` would show it: (its shown end, whether the
    shown text with its whole lines holds an accepted answer and the piece is the question's file `src`)."""
    from gdn2_rag import pipeline as pl
    from gdn2_rag.evaluate import _same_source, contains_answer
    from gdn2_rag.evidence import shown_end

    end = shown_end(piece.text, start, end)
    right_file = bool(src) and _same_source(piece.path, src)  # as `rag eval` judges a citation
    shown = piece.text[start:end] + "\n" + pl._evidence(piece.text, start, end)
    return end, bool(answers) and right_file and contains_answer(shown, answers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--set", required=True)
    ap.add_argument("--budget", type=int, default=16000)
    ap.add_argument("--read", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from gdn2_rag import pipeline as pl
    from gdn2_rag.evaluate import resolve_source
    from gdn2_rag.evidence import MAX_EVIDENCE_CHARS, _candidates

    read = {}
    for line in Path(args.read).read_text().splitlines():
        r = json.loads(line)
        read[r["question"]] = r
    captured = {}
    real_build = pl.RAG._build_answer

    def capture(self, question, context, retrieved, span, use_reader, note="", abstain=""):
        captured["ctx"] = (context, retrieved)
        return real_build(self, question, context, retrieved, span, use_reader, note, abstain)

    pl.RAG._build_answer = capture

    def replay(question, pieces):
        r = read[question]
        assert r["fingerprint"] == _fingerprint(pieces), question
        return [_Span(**s) for s in r["spans"]]

    rag = _rag(args.index, replay, None)
    index = rag._open_index()
    rows = []
    for q in _questions(args.set):
        rag.ask(q["question"], context_tokens=args.budget)
        context, retrieved = captured["ctx"]
        r = read[q["question"]]
        ranked = [p.chunk_id for p in retrieved.passages]
        cands = _candidates(q["question"], context, ranked)
        texts = [context.pieces[pi].text[s:e][:MAX_EVIDENCE_CHARS] for _, pi, s, e, _ in cands]
        vecs = index.embedder.embed([q["question"], *texts])
        cos = (vecs[1:] @ vecs[0]).tolist()
        line_p = {(pi, ln): p for pi, ln, p in r["lines"]}
        src = resolve_source(q.get("source", "")) if q.get("source") else ""
        cand_rows = []
        for (rank, pi, s, e, lex), c in zip(cands, cos, strict=True):
            text = context.pieces[pi].text
            l0, l1 = text.count("\n", 0, s), text.count("\n", 0, max(s, e - 1))
            lp = max((line_p.get((pi, ln), 0.0) for ln in range(l0, l1 + 1)), default=0.0)
            sp = max(
                (
                    x["score"]
                    for x in r["spans"]
                    if x["piece_index"] == pi and x["char_start"] >= s and x["char_end"] <= e
                ),
                default=None,
            )
            end, ok = judge(q["answers"], src, context.pieces[pi], s, e)
            cand_rows.append(
                {"rank": rank, "lex": lex, "cos": c, "line": lp, "span": sp, "ok": ok, "text": text[s:end]}
            )
        top_dense = max(
            (p.dense_score for p in retrieved.passages[:10] if p.dense_score is not None), default=0.0
        )
        rows.append(
            {
                "question": q["question"],
                "domain": q.get("domain", ""),
                "answerable": bool(q["answers"]),
                "no_answer": r.get("no_answer"),
                "top_dense": top_dense,
                "top_span": r["spans"][0]["score"] if r["spans"] else None,
                "cands": cand_rows,
            }
        )
    Path(args.out).write_text(json.dumps(rows))
    acc = accuracy([x for x in rows if x["answerable"]], 0.0, 0.0)
    print(f"{len(rows)} questions; semantic evidence ans+cite (candidate-level) {acc:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
