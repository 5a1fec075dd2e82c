"""Fit and cross-validate the answer-typing weight of the evidence score on a `fusion_study.py` output.

The evidence score of `gdn2_rag.evidence` is `cos + LEXICAL_WEIGHT * lex - RANK_PENALTY * rank + t * type`,
type = `answer_type.type_match` of the candidate's text for the question's expected kinds. Prints, per
weight t, answer+citation per domain over the candidates (dev set only), the 5-fold cross-validated
accuracy of choosing t on four folds and scoring the fifth, and the same with the v3 reader's line and span
terms added (fusion_fit.py's a and b) at the shipped weight.

    python bench/rag/natural/type_fit.py .natural/v3r1/study_text_dev_4000.json
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import fusion_fit

from gdn2_rag.answer_type import expected_types, type_match
from gdn2_rag.evidence import TYPE_WEIGHT

T_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 2.0)
A_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
B_GRID = (0.0, 0.05, 0.1, 0.2, 0.5)


def accuracy(rows: list[dict], t: float, a: float = 0.0, b: float = 0.0) -> float:
    return fusion_fit.accuracy(rows, a, b, t)


def cross_validated(rows: list[dict], grid: list[tuple]) -> float:
    folds = [rows[i :: fusion_fit.FOLDS] for i in range(fusion_fit.FOLDS)]
    right = 0.0
    for i in range(fusion_fit.FOLDS):
        train = [r for j, f in enumerate(folds) if j != i for r in f]
        w = max(grid, key=lambda w: (accuracy(train, *w), tuple(-x for x in w)))
        right += accuracy(folds[i], *w) * len(folds[i])
    return right / len(rows)


def main(path: str) -> None:
    rows = [r for r in json.loads(Path(path).read_text()) if r["answerable"]]
    for r in rows:
        kinds = expected_types(r["question"])
        for c in r["cands"]:
            c["type"] = type_match(kinds, c["text"])
    doms = sorted({r["domain"] for r in rows})
    print(f"{sum(bool(expected_types(r['question'])) for r in rows)} of {len(rows)} questions are typed")
    print("t     " + " ".join(f"{d:>8}" for d in doms) + "  overall")
    for t in T_GRID:
        per = [accuracy([r for r in rows if r["domain"] == d], t) for d in doms]
        print(f"{t:<5} " + " ".join(f"{x:8.3f}" for x in per) + f"  {accuracy(rows, t):.3f}")
    print(f"5-fold CV, t chosen per fold: {cross_validated(rows, [(t,) for t in T_GRID]):.3f}")
    grid = [(TYPE_WEIGHT, a, b) for a, b in itertools.product(A_GRID, B_GRID)]
    best = max(grid, key=lambda w: accuracy(rows, *w))
    print(
        f"with the reader's line/span terms at t = {TYPE_WEIGHT}: in-sample best {best[1:]} "
        f"{accuracy(rows, *best):.3f} (typed alone {accuracy(rows, TYPE_WEIGHT):.3f}); "
        f"5-fold CV {cross_validated(rows, grid):.3f}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
