"""The corpus of the checked-in format-2 indexes (tests/ingest/data/index_v2/) and how they were made.

They were written by the previous release's own code (commit 11d0981, index format 2) with the test
HashEmbedder, so tests/ingest/test_upgrade.py upgrades real old indexes, not imitations:

    git archive 11d0981 gdn2_ingest | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old:$PWD python tests/ingest/make_index_v2.py /tmp/gdn2-index-v2 \\
        tests/ingest/data/index_v2

`flat/` is one ingest with exact search. `hnsw/` was built with dense_exact_max=8 (its dense.faiss is
HNSW) and then updated by a second ingest after `edit_corpus` (a changed file, a deleted one), so its
chunk ids have gaps and its id counters run past the largest id, as in a user's index.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ingest_corpus import CODE, LEGAL, SUPPORT  # noqa: E402

TOPICS = {
    "billing": "invoice payment refund card charge currency receipt subscription plan upgrade",
    "security": "password token encryption audit access role permission breach incident key",
    "network": "proxy firewall latency timeout socket gateway route packet bandwidth dns",
    "storage": "disk volume snapshot backup restore bucket quota replica archive retention",
}


def write_corpus(root: Path) -> None:
    """Three real-looking files plus 16 short notes whose words overlap, so rankings have ties and
    near-ties (deterministic: no randomness, same bytes on every run)."""
    (root / "legal").mkdir(parents=True, exist_ok=True)
    (root / "support").mkdir(exist_ok=True)
    (root / "code").mkdir(exist_ok=True)
    (root / "notes").mkdir(exist_ok=True)
    (root / "legal" / "msa.txt").write_text(LEGAL)
    (root / "support" / "faq.md").write_text(SUPPORT)
    (root / "code" / "tiny.py").write_text(CODE)
    topics = list(TOPICS.items())
    for i in range(16):
        name, words = topics[i % 4]
        other = topics[(i + 1) % 4][1].split()
        ws = words.split()
        lines = [f"# {name.title()} note {i}", ""]
        for j in range(3):
            picked = [ws[(i + j * 3 + k) % len(ws)] for k in range(5)] + [other[(i + j) % len(other)]]
            lines.append("The " + " and the ".join(picked) + " are reviewed every quarter.")
        if i % 5 == 0:
            lines.append("Same closing line in several notes.")
        (root / "notes" / f"{name}-{i:02d}.md").write_text("\n".join(lines) + "\n")


def edit_corpus(root: Path) -> None:
    """The edit between the two ingests of `hnsw/`."""
    (root / "notes" / "billing-04.md").write_text(
        "# Billing\n\nChanged note about refunds and yearly invoices.\n"
    )
    (root / "notes" / "network-06.md").unlink()


def main() -> None:
    from ingest_fakes import HashEmbedder

    from gdn2_ingest import IngestConfig, ingest_paths, store

    if store.FORMAT_VERSION != 2:
        raise SystemExit(f"run with the 11d0981 code on PYTHONPATH (this is format {store.FORMAT_VERSION})")
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(src, ignore_errors=True)
    write_corpus(src / "docs")
    emb = HashEmbedder()
    for kind, exact_max in (("flat", 200_000), ("hnsw", 8)):
        idx = src / kind
        cfg = IngestConfig(embedder_factory=lambda: emb, lock_timeout=5, dense_exact_max=exact_max)
        ingest_paths(idx, [src / "docs"], cfg, progress=False)
        if kind == "hnsw":
            edit_corpus(src / "docs")
            ingest_paths(idx, [src / "docs"], cfg, progress=False)
        shutil.rmtree(out / kind, ignore_errors=True)
        shutil.copytree(idx, out / kind, ignore=shutil.ignore_patterns("lock"))
    (out / "source.json").write_text(json.dumps({"root": str(src / "docs"), "commit": "11d0981"}) + "\n")


if __name__ == "__main__":
    main()
