"""kill -9 at >= 20 random points of updates, removals and compactions (issue 19, part 1).

    PYTHONPATH=$PWD .venv/bin/python bench/index/kill_bench.py --work /tmp/killbench --kills 30 \\
        --out bench/results/raw/index_kills.json

The loop (tests/ingest/segments_worker.py: `kill_loop`) runs a writer over a fixed plan of adds,
edits, removals and compactions (automatic compaction past 4 segments too), kills it with SIGKILL
after a random delay, then opens the index, runs the full check of every segment, and compares its
documents with the two states the kill may leave (before or after the step in flight). Any other
state (a lost document, a deleted one back, two versions of a file) or an index that does not open
fails the run. It prints where the kills landed (the leftovers they left) and the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parents[1] / "tests" / "ingest")]

from segments_worker import kill_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/killbench"))
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--paragraphs", type=int, default=60, help="paragraphs per file (more: longer steps)")
    ap.add_argument(
        "--max-delay", type=float, default=4.0, help="seconds; a kill lands uniformly in [0, this)"
    )
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    records = kill_loop(args.work, args.kills, args.seed, args.paragraphs, args.max_delay)
    for r in records:
        print(r)
    summary = {
        "kills": len(records),
        "unusable_indexes": 0,  # kill_loop raises on the first one
        "lost_documents": 0,  # likewise: any state but before/after the step in flight raises
        "by_op": dict(collections.Counter(r["op"] for r in records)),
        "by_leftovers": dict(collections.Counter(r["leftovers"] for r in records)),
        "by_state": dict(collections.Counter(r["state"] for r in records)),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "records": records}, indent=2))


if __name__ == "__main__":
    main()
