"""A writer to kill -9: a fixed plan of edits, removals and compactions of one index, and the check
that whatever state a kill left is a committed one (tests/ingest/test_segments_crash.py,
bench/index/kill_bench.py).

    python segments_worker.py INDEX DOCS START STEPS SEED PARAGRAPHS

runs steps START..STEPS-1 of plan(SEED), printing "ready" once set up and "done N" after step N is
committed. Every file holds one marker word naming the step that last wrote it, so the index's
content says exactly which steps it holds.
"""

from __future__ import annotations

import contextlib
import random
import re
import sys
from pathlib import Path

MARKER = re.compile(r"\bu(\d{4})marker\b")


def plan(seed: int, steps: int) -> list[tuple[str, str]]:
    """(op, file name) per step: add, edit, remove (the file is deleted, then `remove`d) or compact."""
    rng = random.Random(seed)
    ops: list[tuple[str, str]] = [("add", f"f{i}.md") for i in range(3)]
    live = [name for _, name in ops]
    made = 3
    while len(ops) < steps:
        r = rng.random()
        if r < 0.3 or len(live) < 2:
            name = f"f{made}.md"
            made += 1
            live.append(name)
            ops.append(("add", name))
        elif r < 0.6:
            ops.append(("edit", rng.choice(live)))
        elif r < 0.8:
            name = rng.choice(live)
            live.remove(name)
            ops.append(("remove", name))
        else:
            ops.append(("compact", ""))
    return ops[:steps]


def state(ops: list[tuple[str, str]], upto: int) -> dict[str, int]:
    """file name -> the step whose marker it holds, after steps [0, upto)."""
    out: dict[str, int] = {}
    for i, (op, name) in enumerate(ops[:upto]):
        if op in ("add", "edit"):
            out[name] = i
        elif op == "remove":
            out.pop(name, None)
    return out


def content(step: int, name: str, paragraphs: int) -> str:
    filler = "\n\n".join(
        f"Paragraph {j} of {name} talks about gardens, rivers and the weather on day {j * 7 + step}." * 3
        for j in range(paragraphs)
    )
    return f"# {name}\n\nThe marker word of this file is u{step:04d}marker.\n\n{filler}\n"


def indexed_state(index_dir: Path) -> dict[str, int]:
    """file name -> marker step, read from the live generation after a full check of it."""
    from gdn2_ingest import Index, store
    from gdn2_ingest.index import check_generation

    check_generation(store.require_generation(index_dir))
    out: dict[str, set[int]] = {}
    with Index.open(index_dir) as ix:
        for c in ix.get_chunks([int(i) for i in ix.chunk_ids()]):
            for m in MARKER.findall(c.text):
                out.setdefault(Path(c.path).name, set()).add(int(m))
    assert all(len(v) == 1 for v in out.values()), f"a file holds two versions: {out}"
    return {k: v.pop() for k, v in out.items()}


def leftovers(index_dir: Path) -> str:
    """What a killed writer left behind: where in an update or compaction the kill landed."""
    import json

    found = []
    segs = index_dir / "segments"
    if any(".tmp" in p.name for p in index_dir.glob("gen-*")):
        found.append("generation being written")
    if segs.is_dir() and any(".tmp" in p.name for p in segs.iterdir()):
        found.append("segment being written")
    cur = (index_dir / "CURRENT").read_text().strip() if (index_dir / "CURRENT").exists() else ""
    named = set()
    for g in index_dir.glob("gen-[0-9]*"):
        if ".tmp" not in g.name and (g / "manifest.json").exists():
            named |= set(json.loads((g / "manifest.json").read_text()).get("segments") or [])
            if g.name != cur:
                found.append("previous generation not yet pruned")
    if segs.is_dir() and any(".tmp" not in p.name and p.name not in named for p in segs.iterdir()):
        found.append("sealed segment no generation names")
    return ", ".join(found) or "none"


def kill_loop(
    work: Path, kills: int, seed: int, paragraphs: int, max_delay: float, steps: int = 400
) -> list[dict]:
    """Run the worker, kill -9 it after a random delay, check the index, restart it; `kills` times.

    Returns one record per kill: the step in flight, the delay, the leftovers seen, and which of the
    two acceptable states (before or after the step in flight) the index held. Raises AssertionError
    when the index does not open and check, or holds any other state (a lost or zombie document)."""
    import os
    import signal
    import subprocess
    import time

    index_dir, docs = work / "ix", work / "docs"
    ops = plan(seed, steps)
    rng = random.Random(seed + 1)

    def spawn(start: int, stop: int) -> subprocess.Popen:
        args = [str(index_dir), str(docs), str(start), str(stop), str(seed), str(paragraphs)]
        pipe = subprocess.PIPE
        return subprocess.Popen([sys.executable, __file__, *args], stdout=pipe, stderr=pipe,
                                text=True)  # fmt: skip

    # the first steps run to the end: kills then land in updates of an index that exists
    warm = spawn(0, 3)
    out, err = warm.communicate()
    assert warm.returncode == 0, err[-3000:]
    done = 3  # steps committed (reported) so far
    records = []
    while len(records) < kills:
        proc = spawn(done, steps)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"worker failed to start: {proc.stderr.read()[-3000:]}")
        delay = rng.uniform(0, max_delay)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        finished = [int(x.split()[1]) for x in out.split("\n") if x.startswith("done ")]
        if finished:
            done = finished[-1] + 1
        if done >= steps:
            raise AssertionError("the plan ran out before the kills: raise steps")
        where = leftovers(index_dir)
        if not (index_dir / "CURRENT").exists():
            # killed before the first generation: nothing may be visible yet
            assert done == 0, "CURRENT vanished"
            records.append(
                {"step": done, "op": ops[done][0], "delay": delay, "leftovers": where, "state": "none"}
            )
            continue
        got = indexed_state(index_dir)
        before, after = state(ops, done), state(ops, done + 1)
        if got == before:
            which = "before"
        elif got == after:
            which = "after"
        else:
            raise AssertionError(
                f"step {done} ({ops[done]}): index holds {got}, expected {before} or {after}"
            )
        if which == "after":
            done += 1  # committed, not yet reported
        records.append({"step": done - (which == "after"), "op": ops[done - (which == "after")][0],
                        "delay": round(delay, 3), "leftovers": where, "state": which})  # fmt: skip
    return records


def main() -> None:
    index_dir, docs = Path(sys.argv[1]), Path(sys.argv[2])
    start, steps, seed, paragraphs = (int(x) for x in sys.argv[3:7])
    sys.path[:0] = [str(Path(__file__).parent)]
    import bm25s  # noqa: F401 - imported before "ready", so kills land in the work, not in imports
    import faiss  # noqa: F401
    from ingest_fakes import HashEmbedder

    from gdn2_ingest import IngestConfig, ingest_paths
    from gdn2_ingest.segments_write import NotInIndexError, compact_index, remove_paths

    emb = HashEmbedder()
    cfg = IngestConfig(embedder_factory=lambda: emb, lock_timeout=30, max_segments=4)
    ops = plan(seed, steps)
    docs.mkdir(parents=True, exist_ok=True)
    print("ready", flush=True)
    for i in range(start, steps):
        op, name = ops[i]
        if op in ("add", "edit"):
            (docs / name).write_text(content(i, name, paragraphs))
            ingest_paths(index_dir, [docs], cfg, progress=False)
        elif op == "remove":
            (docs / name).unlink(missing_ok=True)
            # NotInIndexError: the kill came after this removal was committed
            with contextlib.suppress(NotInIndexError):
                remove_paths(index_dir, [docs / name], lock_timeout=30, max_segments=4)
        else:
            compact_index(index_dir, lock_timeout=30)
        print(f"done {i}", flush=True)


if __name__ == "__main__":
    main()
