"""Hostile or odd input through a real ingest: non-UTF-8 file names, decompression bombs.

Bad input must give one clear skip reason, never a crash and never lost data.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gdn2_ingest import Index, IngestConfig, ingest_paths
from gdn2_ingest.loaders import SkipFile, load_file

RAW_NAME = b"caf\xe9 men\xfc.txt"  # Latin-1 bytes: not UTF-8, so Python holds it as 'caf\udce9 ...'


def test_non_utf8_file_name_is_ingested_and_cited_losslessly(tmp_path: Path, cfg: IngestConfig):
    docs = tmp_path / "docs"
    docs.mkdir()
    raw = os.path.join(os.fsencode(docs), RAW_NAME)
    with open(raw, "wb") as f:
        f.write(b"The caf\xc3\xa9 serves zabaglione on Sundays.\n\nOpening hours are nine to five.\n")
    (docs / "plain.txt").write_text("Nothing unusual about the plain file.\n")
    name = os.fsdecode(raw)  # the surrogate-escaped str Python uses for that name
    ix_dir = tmp_path / "ix"
    rep = ingest_paths(ix_dir, [docs], cfg, progress=False)
    assert rep.skipped == [] and rep.files_new == 2
    json.dumps(rep.to_dict())  # the report can be written as JSON
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        hits = ix.get_chunks([i for i, _ in ix.search_bm25("zabaglione", 3)])
        assert hits and hits[0].path == name
        # the kept name opens the very file, and its line span holds the chunk text
        lines = Path(hits[0].path).read_text().split("\n")
        assert hits[0].text in "\n".join(lines[hits[0].line_start - 1 : hits[0].line_end])
        # the title (embedded, printed) shows the undecodable bytes as readable escapes
        assert hits[0].title.startswith("caf\\xe9 men\\xfc.txt")
        # stored losslessly: the exact bytes of the name as a BLOB, UTF-8 names stay TEXT
        stored = dict(ix.segments[0].docstore.db.execute("SELECT path, typeof(path) FROM files").fetchall())
        assert stored[os.path.join(os.fsencode(docs), RAW_NAME)] == "blob"
        assert stored[str(docs / "plain.txt")] == "text"
    # the next run sees the file as unchanged (its stored name round-trips), then as deleted
    again = ingest_paths(ix_dir, [docs], cfg, progress=False)
    assert (again.files_unchanged, again.files_new, again.changed) == (2, 0, False)
    os.unlink(raw)
    gone = ingest_paths(ix_dir, [docs], cfg, progress=False)
    assert gone.files_deleted == 1 and gone.chunks_removed >= 1
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.search_bm25("zabaglione", 3) == []


def test_non_utf8_name_skip_reason_is_storable(tmp_path: Path, cfg: IngestConfig):
    """A skipped file with such a name is remembered (and reported) like any other."""
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(os.path.join(os.fsencode(docs), b"bin\xff.txt"), "wb") as f:
        f.write(b"\x00\x01\x02" * 100)
    rep = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert [s.reason for s in rep.skipped] == ["binary file"]
    assert rep.skipped[0].path == os.fsdecode(os.path.join(os.fsencode(docs), b"bin\xff.txt"))
    again = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert [s.reason for s in again.skipped] == ["binary file"] and not again.changed


def test_surrogates_from_content_are_escaped(tmp_path: Path):
    """8-bit e-mail headers and JSON '\\ud800' escapes give lone surrogates: stored as escapes."""
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"Subject: caf\xe9 bill\nFrom: a@b.c\n\nBody text here.\n")
    d = load_file(eml, eml.read_bytes())[0]
    d.title.encode("utf-8"), d.text.encode("utf-8")
    assert d.title.startswith("caf") and "bill" in d.text
    js = tmp_path / "t.json"
    js.write_text('[{"subject": "odd \\ud800 char", "body": "text"}]')
    d = load_file(js, js.read_bytes())[0]
    d.text.encode("utf-8")
    assert "\\ud800" in d.title


BOMB = 1 << 30  # 1 GiB of zeros: about 1 MB compressed


def _write_bomb(path: Path, size: int = BOMB) -> None:
    block = b"\0" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(size // len(block)):
            f.write(block)


@pytest.mark.slow
def test_gzip_bomb_man_page_skipped_fast_in_bounded_memory(tmp_path: Path):
    docs = tmp_path / "man" / "man1"
    docs.mkdir(parents=True)
    _write_bomb(docs / "bomb.1.gz")
    (docs / "ok.1").write_text(".TH OK 1\n.SH NAME\nok \\- a fine page\n")
    assert (docs / "bomb.1.gz").stat().st_size < 5_000_000
    script = textwrap.dedent(
        f"""
        import json, resource, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from ingest_fakes import HashEmbedder
        from gdn2_ingest import IngestConfig, ingest_paths
        emb = HashEmbedder()
        t = time.perf_counter()
        rep = ingest_paths({str(tmp_path / "ix")!r}, [{str(docs)!r}],
                           IngestConfig(embedder_factory=lambda: emb), progress=False)
        # peak RSS of this process: VmHWM (reset by exec); getrusage's ru_maxrss can carry the
        # forking pytest process's own peak over into the child on Linux, so it is the fallback
        try:
            hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
            rss_mb = int(hwm.split()[1]) / 1024
        except OSError:
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"seconds": time.perf_counter() - t, "rss_mb": rss_mb,
                          "skipped": [[s.path, s.reason] for s in rep.skipped], "new": rep.files_new}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["new"] == 1
    assert [(Path(p).name, r.split(" (")[0]) for p, r in got["skipped"]] == [
        ("bomb.1.gz", "oversized once decompressed")
    ]
    assert got["seconds"] <= 10, got
    assert got["rss_mb"] < 500, got


def test_gzip_cap_is_the_config_setting(tmp_path: Path):
    p = tmp_path / "notes.txt.gz"
    p.write_bytes(gzip.compress(b"x" * 5000 + b"\n"))
    with pytest.raises(SkipFile, match=r"oversized once decompressed \(> 4096 bytes"):
        load_file(p, p.read_bytes(), max_expanded_bytes=4096)
    m = tmp_path / "frob.1.gz"
    m.write_bytes(gzip.compress(b".TH FROB 1\n.SH NAME\nfrob\n" + b'.\\" pad\n' * 1000))
    with pytest.raises(SkipFile, match="oversized once decompressed"):
        load_file(m, m.read_bytes(), max_expanded_bytes=4096)
    with pytest.raises(ValueError, match="max_expanded_bytes=0"):
        IngestConfig(max_expanded_bytes=0).validate()


def test_docx_zip_bomb_refused_from_the_zip_directory(tmp_path: Path):
    import docx

    d = docx.Document()
    d.add_paragraph("word " * 2000)
    p = tmp_path / "big.docx"
    d.save(str(p))
    assert load_file(p, p.read_bytes())[0].text.startswith("word")
    with pytest.raises(SkipFile, match="oversized once decompressed"):
        load_file(p, p.read_bytes(), max_expanded_bytes=10_000)


def test_display_path_escapes_undecodable_bytes():
    from gdn2_ingest.scan import display_path

    assert display_path(os.fsdecode(b"/d/caf\xe9.txt")) == "/d/caf\\xe9.txt"
    assert display_path(Path("/d/caf\u00e9.txt")) == "/d/caf\u00e9.txt"
