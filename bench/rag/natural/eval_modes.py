"""Answer a natural-question set without a reader span, by evidence mode, and calibrate abstention.

    python bench/rag/natural/eval_modes.py --index IDX --set bench/data/natural_dev.jsonl \
        --out bench/results/natural --calibrate

For each mode (lexical evidence = the old retrieval-only answer; semantic evidence = the default) it
prints `rag eval`'s table and writes the JSON report. With `--calibrate` it then picks the abstention
threshold on this set: the largest cosine under which at most `--max-abstain` of the answerable questions
fall (by the best dense cosine of the retrieved passages; a question naming something no document mentions
abstains at any threshold: gdn2_rag.abstain; run it with no `--abstain`), and reports what share of the
unanswerable ones it catches. Calibrate on the dev set only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def run(index: str, set_path: str, config, budget: int | None):
    from gdn2_rag import RAG
    from gdn2_rag.abstain import best_cosine, unknown_names
    from gdn2_rag.evaluate import evaluate, load_eval_set

    rag = RAG.open(index, config=config)
    strengths = []

    def ask(q):
        a = rag.ask(q, context_tokens=budget)
        # the abstention signals (gdn2_rag.abstain): a question naming what no document mentions counts as
        # below every threshold; else the best dense cosine of the passages
        named = bool(unknown_names(q, rag._open_index()))
        strengths.append(-1.0 if named else (best_cosine(a.passages) or 0.0))
        return a

    t = time.perf_counter()
    report = evaluate(ask, load_eval_set(set_path))
    return report, strengths, (time.perf_counter() - t) / max(1, len(strengths))


def calibrate(report, strengths, max_abstain: float) -> dict:
    ans = sorted(s for r, s in zip(report.rows, strengths, strict=True) if r.answerable)
    unans = [s for r, s in zip(report.rows, strengths, strict=True) if not r.answerable]
    # the threshold under which at most max_abstain of the answerable questions fall
    k = int(max_abstain * len(ans))
    threshold = ans[k] if k < len(ans) else ans[-1]
    return {
        "threshold": round(float(threshold), 4),
        "answerable_abstain": sum(s < threshold for s in ans) / len(ans),
        "unanswerable_abstain": sum(s < threshold for s in unans) / max(1, len(unans)),
        "answerable_strength_median": ans[len(ans) // 2],
        "unanswerable_strength_median": sorted(unans)[len(unans) // 2] if unans else None,
    }


def main() -> None:
    from gdn2_rag import RAGConfig
    from gdn2_rag.evaluate import format_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--set", required=True)
    ap.add_argument("--out", default=None, help="folder for the JSON reports")
    ap.add_argument("--budget", type=int, default=16000)
    ap.add_argument("--modes", default="lexical,semantic", help="also lexical-untyped, semantic-untyped")
    ap.add_argument("--abstain", action="store_true", help="abstain as `rag ask --abstain` does")
    ap.add_argument("--abstain-below", type=float, default=None, help="default: the calibrated value")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--max-abstain", type=float, default=0.10)
    args = ap.parse_args()
    name = Path(args.set).stem
    for mode in args.modes.split(","):
        # "<mode>-untyped": the same evidence without answer typing (RAGConfig.answer_types=False)
        evidence, _, untyped = mode.partition("-")
        cfg = RAGConfig(
            use_reader=False,
            evidence=evidence,
            answer_types=untyped != "untyped",
            abstain=args.abstain,
            abstain_below=args.abstain_below,
        )
        report, strengths, per_q = run(args.index, args.set, cfg, args.budget)
        how = f"abstain below {args.abstain_below or 'calibrated'}" if args.abstain else "no abstention"
        print(f"\n## {name}: {mode} evidence, {how} ({per_q:.2f} s/question)")
        print(format_table(report))
        data = report.to_dict()
        if args.calibrate and evidence == "semantic":
            data["calibration"] = calibrate(report, strengths, args.max_abstain)
            print("calibration:", json.dumps(data["calibration"]))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            out = Path(args.out) / f"{name}_{mode}{'_abstain' if args.abstain else ''}.json"
            out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
