"""Retrieval over real man pages: hit@1 / hit@5 of option-level questions, by man page renderer.

Builds an index of 40 pages from /usr/share/man/man1 (gzipped roff, as installed) with the real
all-MiniLM-L6-v2 embedder, asks 22 hand-written questions whose answer is one option or paragraph of
one page, and counts a hit at k when one of the top-k chunks comes from that page: dense (FAISS), BM25
and hybrid (both fused by reciprocal rank, k=60, as `rag search` does). `answer@k` is stricter: one of
the top-k hybrid chunks comes from that page and holds the answering option (its needle, spaces
normalised), i.e. the passage a reader would need.

    .venv/bin/python bench/ingest/ingest_man_retrieval.py --work /tmp/man-bench               # groff renderer
    .venv/bin/python bench/ingest/ingest_man_retrieval.py --work /tmp/man-bench --renderer hand  # fallback

Prints one JSON object (renderer, chunks, seconds, hit@1/hit@5 per method, misses).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

PAGES = [
    "ls", "cp", "mv", "rm", "find", "grep", "sed", "tar", "gzip", "ssh", "curl", "wget", "chmod", "chown",
    "ps", "kill", "df", "du", "ln", "touch", "head", "tail", "sort", "uniq", "wc", "cut", "tr", "xargs",
    "diff", "patch", "make", "less", "cat", "date", "sleep", "env", "nice", "zip", "unzip", "top",
]  # fmt: skip

# (question, page, needle): each answered by one option or paragraph of the page (the one holding
# the needle), worded as a user would ask
QUESTIONS = [
    ("How do I find files by their permission bits?", "find", "-perm"),
    ("How do I print only the names of files that contain a match?", "grep", "files-with-matches"),
    ("How can I show a few lines of context around each matching line?", "grep", "--context"),
    ("How do I edit a file in place with a script of substitutions?", "sed", "--in-place"),
    ("How do I extract files from a gzip-compressed archive?", "tar", "--gzip"),
    ("How do I keep the original file when compressing?", "gzip", "--keep"),
    ("How do I forward a local port through a secure shell connection to a remote host?", "ssh", "hostport"),
    ("How do I make the HTTP client follow redirects to the new location?", "curl", "--location"),
    ("How do I resume getting a partially-downloaded file?", "wget", "--continue"),
    ("How do I list files sorted by modification time, newest first?", "ls", "sort by time, newest first"),
    ("How do I preserve mode, ownership and timestamps when copying files?", "cp", "--preserve"),
    ("How do I make a symbolic link instead of a hard link?", "ln", "--symbolic"),
    ("How do I show disk usage in human readable sizes like 1K 234M 2G?", "du", "--human-readable"),
    ("How do I print the file system type along with free space?", "df", "--print-type"),
    ("How do I sort by a particular field or key?", "sort", "--key"),
    ("How do I prefix lines by the number of occurrences?", "uniq", "--count"),
    ("How do I select fields separated by a delimiter character?", "cut", "--delimiter"),
    ("How do I delete characters instead of translating them?", "tr", "--delete"),
    ("How do I run up to several processes at a time in parallel?", "xargs", "--max-procs"),
    ("How do I output appended data as the file grows?", "tail", "--follow"),
    ("How do I list signal names?", "kill", "--list"),
    ("How do I change a file's timestamp to a given date instead of the current time?", "touch", "--date"),
]


def build_corpus(work: Path) -> Path:
    root = work / "corpus" / "man" / "man1"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for p in PAGES:
        src = Path(f"/usr/share/man/man1/{p}.1.gz")
        shutil.copyfile(src.resolve(), root / src.name)
    return root.parent.parent


def rrf(lists: list[list[int]], k: int = 60) -> list[int]:
    score: dict[int, float] = {}
    for ranked in lists:
        for r, cid in enumerate(ranked):
            score[cid] = score.get(cid, 0.0) + 1.0 / (k + r + 1)
    return sorted(score, key=lambda c: -score[c])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/man-bench")
    ap.add_argument("--renderer", choices=("auto", "hand"), default="auto")
    args = ap.parse_args()

    from gdn2_ingest import Index, IngestConfig, ingest_paths
    from gdn2_ingest.loaders import man

    if args.renderer == "hand":
        man.GROFF = None  # as on a machine without groff: the built-in roff parser
    work = Path(args.work)
    corpus = build_corpus(work)
    ix_dir = work / f"ix-{args.renderer}"
    shutil.rmtree(ix_dir, ignore_errors=True)
    t = time.perf_counter()
    rep = ingest_paths(ix_dir, [corpus], IngestConfig(device="cpu"), progress=False)
    seconds = time.perf_counter() - t
    hits = {m: [0, 0] for m in ("dense", "bm25", "hybrid", "answer")}
    misses = []
    with Index.open(ix_dir, device="cpu") as ix:
        for q, page, needle in QUESTIONS:
            dense = [i for i, _ in ix.search_dense(q, 50)]
            bm25 = [i for i, _ in ix.search_bm25(q, 50)]
            for m, ranked in (("dense", dense), ("bm25", bm25), ("hybrid", rrf([dense, bm25]))):
                paths = [Path(c.path).name for c in ix.get_chunks(ranked[:5])]
                want = f"{page}.1.gz"
                hits[m][0] += bool(paths[:1] == [want])
                hits[m][1] += want in paths
                if m == "hybrid" and paths[:1] != [want]:
                    misses.append({"question": q, "want": want, "got": paths[:3]})
            top = ix.get_chunks(rrf([dense, bm25])[:5])
            ok = [Path(c.path).name == f"{page}.1.gz" and needle in " ".join(c.text.split()) for c in top]
            hits["answer"][0] += ok[0]
            hits["answer"][1] += any(ok)
    n = len(QUESTIONS)
    out = {
        "renderer": args.renderer if args.renderer == "hand" or man.GROFF else "hand (no groff)",
        "pages": len(PAGES),
        "questions": n,
        "chunks": rep.chunks_total,
        "skipped": [(s.path, s.reason) for s in rep.skipped],
        "ingest_seconds": round(seconds, 1),
        **{f"{m}_hit@1": round(h[0] / n, 3) for m, h in hits.items()},
        **{f"{m}_hit@5": round(h[1] / n, 3) for m, h in hits.items()},
        "hybrid_misses_at_1": misses,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
