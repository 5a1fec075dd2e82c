"""What the hardened loaders and chunker give a real ingest: the decompression cap (a gzip bomb man
page is skipped, naming the cap, fast), code files chunked by lines counted in the report, and man
pages re-chunked when an index was built with another man renderer."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest

from gdn2_ingest import Index, IngestConfig, ingest_paths
from gdn2_ingest.chunking import code as code_mod
from gdn2_ingest.loaders import man as man_mod

PAGE = r""".TH TOOLISH 1 "2024" "toolish 1.0"
.SH NAME
toolish \- count quokkas
.SH OPTIONS
.TP
.B \-\-herd " SIZE"
Count quokkas in herds of
.IR SIZE .
"""


def _chunks(ix: Index) -> list:
    return ix.get_chunks([int(i) for i in ix.chunk_ids()])


def _bomb(path: Path, expanded: int) -> None:
    """A gzip file of `expanded` zero bytes, written in 1 MiB blocks (a few hundred kB on disk)."""
    block = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as gz:
        for _ in range(expanded // len(block)):
            gz.write(block)


def test_gzip_bomb_man_page_is_skipped_at_the_configured_cap(tmp_path: Path, cfg: IngestConfig):
    docs = tmp_path / "docs"
    (docs / "man" / "man1").mkdir(parents=True)
    _bomb(docs / "man" / "man1" / "bomb.1.gz", 200 << 20)
    (docs / "notes.txt").write_text("Quokkas live on Rottnest Island.\n")
    cap = 1_000_000
    small = IngestConfig(embedder_factory=cfg.embedder_factory, lock_timeout=5, max_expanded_bytes=cap)
    t0 = time.perf_counter()
    rep = ingest_paths(tmp_path / "ix", [docs], small, progress=False)
    elapsed = time.perf_counter() - t0
    assert [Path(s.path).name for s in rep.skipped] == ["bomb.1.gz"]
    reason = rep.skipped[0].reason
    assert "max_expanded_bytes" in reason and str(cap) in reason, reason
    assert rep.files_new == 1 and rep.chunks_total >= 1
    assert elapsed < 20, elapsed  # stopped at 1 MB, not expanded to 200 MB (nor to the 50 MB default)
    # another cap retries the skipped file (the cap is one of the skip settings)
    again = ingest_paths(tmp_path / "ix", [docs], small, progress=False)
    assert not again.changed and len(again.skipped) == 1
    other = IngestConfig(embedder_factory=cfg.embedder_factory, lock_timeout=5, max_expanded_bytes=2 * cap)
    retried = ingest_paths(tmp_path / "ix", [docs], other, progress=False)
    assert retried.changed and str(2 * cap) in retried.skipped[0].reason


def test_code_files_chunked_by_lines_are_counted(tmp_path: Path, cfg: IngestConfig, monkeypatch):
    class Broken:
        def parse(self, src):
            raise RuntimeError("grammar ABI mismatch")

    code_mod._parser.cache_clear()
    monkeypatch.setattr(code_mod, "_parser", lambda lang: (Broken(), ""))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "m.py").write_text("def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n")
    (docs / "notes.txt").write_text("Quokkas live on Rottnest Island.\n")
    rep = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert rep.code_fallbacks == 1 and rep.files_new == 2 and not rep.skipped
    assert "1 code files chunked by lines" in rep.summary()
    assert rep.to_dict()["code_fallbacks"] == 1
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        assert ix.search_bm25("return", 3)


def test_code_fallbacks_absent_from_the_summary_when_none(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    rep = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    assert rep.code_fallbacks == 0 and "chunked by lines" not in rep.summary()


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_pages_rendered_the_old_way_are_rechunked(tmp_path: Path, cfg: IngestConfig, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "man" / "man1").mkdir(parents=True)
    (docs / "man" / "man1" / "toolish.1").write_text(PAGE)
    (docs / "notes.txt").write_text("Quokkas live on Rottnest Island.\n")
    # an index built while man pages were rendered by the built-in parser
    with monkeypatch.context() as m:
        m.setattr(man_mod, "GROFF", None)
        old = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert old.files_new == 2
    manifest = json.loads((tmp_path / "ix" / old.generation / "manifest.json").read_text())
    assert manifest["chunking"]["man_renderer"] == "builtin"
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        before = sorted(c.text for c in _chunks(ix))
    # groff renders them now: the same unchanged files are chunked again
    new = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert new.changed and new.files_changed == 2 and not new.skipped
    manifest = json.loads((tmp_path / "ix" / new.generation / "manifest.json").read_text())
    assert manifest["chunking"]["man_renderer"].startswith("groff")
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        after = sorted(c.text for c in _chunks(ix))
        man = [c for c in _chunks(ix) if c.path.endswith(".1")]
    assert after != before and len(after) == len(before) and man
    # groff's rendering (option and argument one space apart), with lines of that text
    assert any("--herd SIZE" in c.text for c in man) and all("--herd  SIZE" not in c.text for c in man)
    assert not ingest_paths(tmp_path / "ix", [docs], cfg, progress=False).changed
