"""Reliability of answer confidences on a hand-written set, and the "reader when confident" hybrid.

Inputs are `reader_replay.py score --json` or `rag eval --reader --out` reports (rows carry the answer's
`score`) and, for the evidence, the semantic evidence's candidate study (`fusion_study.py`: the chosen
sentence's cosine and whether it is right) or a `rag eval --no-reader --out` report at the same budget (then
the hybrid is exactly the pipeline's calibrated threshold: the evidence of the same context below it).
Writes a reliability diagram (PNG: accuracy per confidence decile, each reader and the evidence) and prints,
per answer, the AUROC of its confidence for right vs wrong answers (0.5: confidence tells nothing), and
for each reader the accuracy of "reader when its score >= t, else the evidence", t chosen on 4/5 of the
questions and scored on the rest (5 folds).

    python bench/rag/natural/reliability.py --evidence .natural/v3/study_dev_16000.json \
        --reader "reader v2=.natural/score_old_dev_16000.json" \
        --reader "reader v3=.natural/score_v3_dev_16000.json" \
        --png bench/results/natural/reliability_dev.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from fusion_fit import pick

BINS = 10
FOLDS = 5


def evidence_rows(path: str) -> dict[str, tuple[float, bool]]:
    """question -> (cosine of the chosen sentence, right), choosing as gdn2_rag.evidence does; or, from a
    `rag eval --no-reader --out` report, (the answer's score, right) as the pipeline answered."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        return _report_rows(data)
    out = {}
    for r in data:
        if not r["answerable"] or not r["cands"]:
            continue
        best = r["cands"][pick(r, 0.0, 0.0)]
        out[r["question"]] = (best["cos"], bool(best["ok"]))
    return out


def reader_rows(path: str) -> dict[str, tuple[float, bool]]:
    return _report_rows(json.loads(Path(path).read_text()))


def _report_rows(report: dict) -> dict[str, tuple[float, bool]]:
    """question -> (the answer's score, right) of a `rag eval --out` or `reader_replay.py score` report."""
    return {
        r["question"]: (float(r["score"] or 0.0), bool(r["answer_citation"]))
        for r in report["rows"]
        if r["answerable"]
    }


def quantile_bins(conf: np.ndarray, right: np.ndarray) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, n) per confidence decile (equal-count bins)."""
    order = np.argsort(conf)
    return [
        (float(conf[b].mean()), float(right[b].mean()), len(b)) for b in np.array_split(order, BINS) if len(b)
    ]


def roc_auc(conf: np.ndarray, right: np.ndarray) -> float:
    """P(a right answer's confidence > a wrong one's), ties counting half (Mann-Whitney)."""
    pos, neg = conf[right], conf[~right]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def hybrid(reader: dict, evidence: dict) -> tuple[float, float]:
    """(in-sample best, 5-fold CV) accuracy of the reader's answer when its score >= t, else the evidence."""
    qs = sorted(set(reader) & set(evidence))
    s = np.array([reader[q][0] for q in qs])
    r_ok = np.array([reader[q][1] for q in qs])
    e_ok = np.array([evidence[q][1] for q in qs])
    grid = np.unique(np.concatenate([s, [np.inf]]))

    def acc(idx, t):
        return float(np.where(s[idx] >= t, r_ok[idx], e_ok[idx]).mean())

    every = np.arange(len(qs))
    best_in = max(acc(every, t) for t in grid)
    hits = 0.0
    for f in range(FOLDS):
        test, train = every[f::FOLDS], np.setdiff1d(every, every[f::FOLDS])
        t = max(grid, key=lambda t: (acc(train, t), t))
        hits += acc(test, t) * len(test)
    return best_in, hits / len(qs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evidence", required=True)
    ap.add_argument("--reader", action="append", default=[], help="LABEL=report.json")
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evidence = evidence_rows(args.evidence)
    series = {"semantic evidence (cosine)": evidence}
    for spec in args.reader:
        label, _, path = spec.partition("=")
        series[label] = reader_rows(path)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    print(f"{'answer':30} {'n':>4} {'acc':>6} {'AUROC':>6}  hybrid with evidence: in-sample / 5-fold CV")
    for label, rows in series.items():
        conf = np.array([c for c, _ in rows.values()])
        right = np.array([ok for _, ok in rows.values()], dtype=float)
        bins = quantile_bins(conf, right)
        auroc = roc_auc(conf, right.astype(bool))
        extra = ""
        if rows is not evidence:
            extra = "  {:.3f} / {:.3f}".format(*hybrid(rows, evidence))
        print(f"{label:30} {len(conf):4d} {right.mean():6.3f} {auroc:6.3f}{extra}")
        ax.plot([(i + 0.5) / len(bins) for i in range(len(bins))], [a for _, a, _ in bins], "o-", label=label)
    ax.axhline(
        np.mean([ok for _, ok in evidence.values()]), color="grey", lw=0.8, ls="--", label="evidence, all"
    )
    ax.set_xlabel("confidence decile (equal-count bins, low to high)")
    ax.set_ylabel("answer+citation accuracy in the bin")
    ax.set_ylim(0, 1)
    ax.set_title("Hand-written dev set: does confidence predict correctness?", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"-> {args.png}")


if __name__ == "__main__":
    main()
