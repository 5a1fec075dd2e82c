"""Fit and cross-validate the evidence fusion weights on a `fusion_study.py` output (the dev set only).

The fused score of an evidence candidate is the semantic evidence score of `gdn2_rag.evidence` plus
`a * P(line is evidence)` (the v3 reader's line head, max over the candidate's lines) plus `b * span score`
(the reader's best span inside the candidate, 0 when none). Prints the accuracy of every grid point, the
5-fold cross-validated accuracy of choosing (a, b) on four folds and scoring the fifth, and the abstention
rules' recall at <= 10 % of the answerable questions abstaining.

    python bench/rag/natural/fusion_fit.py .natural/v3/study_dev_16000.json
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

from gdn2_rag.evidence import LEXICAL_WEIGHT, RANK_PENALTY

A_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
B_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)
FOLDS = 5


def pick(row: dict, a: float, b: float, t: float = 0.0) -> int | None:
    """The candidate the fused score chooses; `t` weighs the answer-type term a caller put in c["type"]
    (type_fit.py)."""
    best, arg = -1e9, None
    for i, c in enumerate(row["cands"]):
        s = (
            c["cos"]
            + LEXICAL_WEIGHT * c["lex"]
            - RANK_PENALTY * c["rank"]
            + a * c["line"]
            + b * (c["span"] or 0.0)
            + t * c.get("type", 0.0)
        )
        if s > best:
            best, arg = s, i
    return arg


def accuracy(rows: list[dict], a: float, b: float, t: float = 0.0) -> float:
    hits = [bool(r["cands"] and r["cands"][pick(r, a, b, t)]["ok"]) for r in rows]
    return float(np.mean(hits)) if hits else 0.0


def main(path: str) -> None:
    rows = json.loads(Path(path).read_text())
    ans = [r for r in rows if r["answerable"]]
    doms = sorted({r["domain"] for r in ans})
    print("a     b     " + " ".join(f"{d:>8}" for d in doms) + "  overall")
    grid = {}
    for a, b in itertools.product(A_GRID, B_GRID):
        grid[a, b] = accuracy(ans, a, b)
        per = [accuracy([r for r in ans if r["domain"] == d], a, b) for d in doms]
        print(f"{a:<5} {b:<5} " + " ".join(f"{x:8.3f}" for x in per) + f"  {grid[a, b]:.3f}")
    # cross-validation: folds by question order (the set interleaves domains and documents)
    folds = [ans[i::FOLDS] for i in range(FOLDS)]
    cv = []
    for i in range(FOLDS):
        train = [r for j, f in enumerate(folds) if j != i for r in f]
        a, b = max(grid, key=lambda ab: (accuracy(train, *ab), -ab[0], -ab[1]))
        cv.append((accuracy(folds[i], a, b), len(folds[i]), (a, b)))
    cv_acc = sum(x * n for x, n, _ in cv) / sum(n for _, n, _ in cv)
    print(
        f"semantic only {grid[0.0, 0.0]:.3f}; 5-fold CV fused {cv_acc:.3f}; "
        f"chosen per fold {[c[2] for c in cv]}"
    )
    # abstention: which signal separates unanswerable questions at <= 10 % answerable abstaining
    un = [r for r in rows if not r["answerable"]]
    for name, f in {
        "reader no-answer": lambda r: -(r["no_answer"] or 0.0),
        "top dense cosine": lambda r: r["top_dense"],
        "dense - no-answer": lambda r: r["top_dense"] - (r["no_answer"] or 0.0),
    }.items():
        xs = np.array([f(r) for r in ans])
        th = np.quantile(xs, 0.10)
        rec = np.mean([f(r) < th for r in un]) if un else 0.0
        print(
            f"abstain on {name:18}: threshold {th:.3f}, answerable abstain {np.mean(xs < th):.2f}, "
            f"unanswerable {rec:.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
