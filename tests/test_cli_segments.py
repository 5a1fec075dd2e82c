"""`rag remove` and `rag compact` through the CLI: text and JSON output, one-line user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

import gdn2_cli
from gdn2_ingest import Index, IngestConfig, ingest_paths

sys.path.insert(0, str(Path(__file__).parent / "ingest"))
from ingest_fakes import HashEmbedder  # noqa: E402

runner = CliRunner()


def _index(tmp_path: Path) -> tuple[Path, Path, HashEmbedder]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nAardvarks dig burrows at night.\n")
    (docs / "b.md").write_text("# B\n\nBadgers are nocturnal too.\n")
    for i in range(3):  # one removal then tombstones a fifth of the chunks: below the compaction threshold
        (docs / f"n{i}.md").write_text(f"# N{i}\n\nNote {i} about otters.\n")
    emb = HashEmbedder()
    ingest_paths(tmp_path / "ix", [docs], IngestConfig(embedder_factory=lambda: emb), progress=False)
    (docs / "c.md").write_text("# C\n\nCapybaras swim well.\n")
    ingest_paths(tmp_path / "ix", [docs], IngestConfig(embedder_factory=lambda: emb), progress=False)
    return tmp_path / "ix", docs, emb


def test_remove_then_compact(tmp_path: Path):
    ix, docs, emb = _index(tmp_path)
    out = runner.invoke(gdn2_cli.app, ["remove", str(docs / "a.md"), "--index", str(ix)])
    assert out.exit_code == 0, out.output
    assert "removed 1 files" in out.output and "index ready" in out.output
    with Index.open(ix, embedder=emb) as index:
        assert index.search_bm25("aardvarks", 3) == [] and index.stats().segments == 2
    out = runner.invoke(gdn2_cli.app, ["compact", "--index", str(ix), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)["report"]
    assert report["compacted"] == 2 and report["changed"] and report["chunks_total"] == 5
    with Index.open(ix, embedder=emb) as index:
        assert index.stats().segments == 1 and index.search_bm25("capybaras", 1)
    out = runner.invoke(gdn2_cli.app, ["compact", "--index", str(ix)])
    assert out.exit_code == 0 and "already compact" in out.output


def test_remove_errors_are_one_line_exit_2(tmp_path: Path):
    ix, docs, _ = _index(tmp_path)
    out = runner.invoke(gdn2_cli.app, ["remove", str(docs / "nowhere.md"), "--index", str(ix)])
    assert out.exit_code == 2 and "is not in the index" in out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    out = runner.invoke(gdn2_cli.app, ["compact", "--index", str(tmp_path / "none")])
    assert out.exit_code == 2 and "no index at" in out.output
