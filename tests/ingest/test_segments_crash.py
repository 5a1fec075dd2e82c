"""kill -9 of a writer at random points of updates, removals and compactions: every kill leaves an
index that opens, passes the full check and holds exactly the committed documents (no loss, no
resurrection). bench/index/kill_bench.py runs the same loop longer (>= 20 kills)."""

from __future__ import annotations

from pathlib import Path

from segments_worker import kill_loop


def test_kill9_at_random_points_leaves_a_committed_index(tmp_path: Path):
    records = kill_loop(tmp_path, kills=5, seed=11, paragraphs=6, max_delay=2.5)
    assert len(records) == 5
    # the next run cleans up whatever the last kill left
    assert all(r["state"] in ("before", "after", "none") for r in records)
