"""End-to-end ingest into an index folder: search, anchors, incremental updates, bad input, mismatches."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from ingest_fakes import HashEmbedder

from gdn2_ingest import (
    EmbedderMismatchError,
    Index,
    IndexFormatError,
    IndexNotFoundError,
    IngestConfig,
    MissingPathError,
    ingest_paths,
)


def _ids_for_path(ix: Index, needle: str) -> list[int]:
    return [c.id for c in ix.get_chunks([int(i) for i in ix.chunk_ids()]) if c.path.endswith(needle)]


def test_ingest_search_and_anchors(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    rep = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    assert (rep.files_seen, rep.files_new, len(rep.skipped)) == (3, 3, 0)
    assert rep.chunks_added == rep.chunks_total > 0 and rep.changed
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        st = ix.stats()
        assert (st.files, st.documents, st.chunks, st.dims) == (3, 3, rep.chunks_total, 256)
        assert set(st.per_domain) == {"legal", "support", "code"} and st.dense_kind == "flat"
        top = ix.get_chunks([i for i, _ in ix.search_bm25("reset password link", 3)])
        assert top[0].path.endswith("faq.md") and top[0].domain == "support"
        legal = ix.get_chunks(_ids_for_path(ix, "msa.txt"))
        assert legal and all(c.domain == "legal" for c in legal)
        # a chunk's own title-prefixed text finds that chunk first (ids line up across stores)
        probe = legal[-1]
        got = ix.search_dense(f"{probe.title}: {probe.section.split(' | ')[0]}\n{probe.text}", 3)
        assert got[0][0] == probe.id and got[0][1] > 0.95
        # every chunk's line span holds its text in the source file
        for c in ix.get_chunks(list(range(1, st.chunks + 1))):
            lines = Path(c.path).read_text().split("\n")
            assert c.text.strip() in "\n".join(lines[c.line_start - 1 : c.line_end])
            assert c.citation == f"{c.path}:{c.line_start}-{c.line_end}" and c.page is None
        code = ix.get_chunks(_ids_for_path(ix, "tiny.py"))
        assert any("Greeter" in c.section for c in code)
        mid = code[len(code) // 2]
        around = ix.neighbours(mid.id, before=1, after=1)
        assert [c.ordinal for c in around] == list(
            range(max(0, mid.ordinal - 1), mid.ordinal + len(around) - 1 + 1)
        )[: len(around)]
        assert all(c.doc_id == mid.doc_id for c in around)
    manifest = json.loads(next((tmp_path / "ix").glob("gen-*/manifest.json")).read_text())
    assert manifest["format_version"] == 3 and manifest["embedder"]["dim"] == 256


def test_incremental_add_change_delete(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    first = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        faq_ids = _ids_for_path(ix, "faq.md")
        faq_vecs = ix.vectors(faq_ids)
    (corpus / "support" / "new.md").write_text(
        "# Shipping\n\nParcels ship with the zeppelinfreight carrier.\n"
    )
    (corpus / "code" / "tiny.py").write_text("def quuxify(x):\n    return x * 42\n")
    (corpus / "legal" / "msa.txt").unlink()
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert (rep.files_new, rep.files_changed, rep.files_deleted, rep.files_unchanged) == (1, 1, 1, 1)
    assert rep.chunks_removed > 0 and rep.chunks_embedded == rep.chunks_added == 2
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().chunks == first.chunks_total - rep.chunks_removed + rep.chunks_added
        # deleted and replaced text is gone from the keyword, dense and metadata stores together
        assert ix.search_bm25("Confidential Information", 5) == []
        assert ix.search_bm25("Greeter", 5) == []
        assert _ids_for_path(ix, "msa.txt") == []
        dense_paths = {c.path for c in ix.get_chunks([i for i, _ in ix.search_dense("Confidential", 50)])}
        assert not any(p.endswith("msa.txt") for p in dense_paths)
        assert len(ix.chunk_ids()) == ix.stats().chunks
        hit = ix.get_chunks([ix.search_bm25("zeppelinfreight", 1)[0][0]])[0]
        assert hit.path.endswith("new.md")
        assert ix.get_chunks([ix.search_bm25("quuxify", 1)[0][0]])[0].section == "quuxify"
        # the unchanged file kept its chunk ids and its vectors (carried from the previous generation)
        assert _ids_for_path(ix, "faq.md") == faq_ids
        assert np.array_equal(ix.vectors(faq_ids), faq_vecs)


def test_ingesting_another_folder_keeps_the_first(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.txt").write_text("The warehouse opens at nine.\n")
    ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    rep = ingest_paths(tmp_path / "ix", [other], cfg, progress=False)
    assert rep.files_deleted == 0 and rep.files_new == 1
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().files == 4


def test_no_change_reingest_is_quick_and_writes_nothing(tmp_path: Path, corpus: Path):
    emb = HashEmbedder()
    cfg = IngestConfig(embedder_factory=lambda: emb)
    full = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    calls = emb.calls
    gens = sorted(p.name for p in (tmp_path / "ix").iterdir())
    t = time.perf_counter()
    again = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    took = time.perf_counter() - t
    assert not again.changed and again.generation == full.generation and emb.calls == calls
    assert (again.files_unchanged, again.chunks_added, again.chunks_total) == (3, 0, full.chunks_total)
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == gens
    assert took < 1.0
    # touching a file without changing it re-hashes but does not re-embed
    f = corpus / "support" / "faq.md"
    f.write_text(f.read_text())
    touched = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    assert not touched.changed and emb.calls == calls


def test_bad_files_skipped_counted_and_remembered(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    (corpus / "blob.bin").write_bytes(bytes(range(256)) * 10)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n%garbage")
    (corpus / "huge.txt").write_text("word " * 5000)
    (corpus / "bad.json").write_text("{oops")
    cfg.max_file_bytes = 20_000
    rep = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    reasons = {Path(s.path).name: s.reason for s in rep.skipped}
    assert set(reasons) == {"blob.bin", "broken.pdf", "huge.txt", "bad.json"}
    assert "binary" in reasons["blob.bin"] and "PDF" in reasons["broken.pdf"]
    assert "oversized" in reasons["huge.txt"] and "JSON" in reasons["bad.json"]
    assert rep.files_new == 3 and rep.chunks_total > 0
    again = ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    assert not again.changed and {Path(s.path).name for s in again.skipped} == set(reasons)
    assert "4 skipped" in again.summary()


def test_missing_path_is_an_error(tmp_path: Path, cfg: IngestConfig):
    with pytest.raises(MissingPathError, match="path not found"):
        ingest_paths(tmp_path / "ix", [tmp_path / "nope"], cfg, progress=False)
    assert not (tmp_path / "ix").exists()


def test_embedder_mismatch_is_a_clear_error(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    other = HashEmbedder(dim=32, name="other")
    with pytest.raises(EmbedderMismatchError, match="built with embedder hash .dim 256.*not other .dim 32"):
        ingest_paths(tmp_path / "ix", [corpus], IngestConfig(embedder_factory=lambda: other), progress=False)
    with pytest.raises(EmbedderMismatchError):
        Index.open(tmp_path / "ix", embedder=other)


def test_open_errors(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    with pytest.raises(IndexNotFoundError, match="no index"):
        Index.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="no finished index"):
        Index.open(tmp_path / "empty")
    ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    mf = next((tmp_path / "ix").glob("gen-*/manifest.json"))
    m = json.loads(mf.read_text())
    m["format_version"] = 99
    mf.write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="format 99"):
        Index.open(tmp_path / "ix")


def test_config_validation():
    for bad in ({"domain": "medical"}, {"target_tokens": 4}, {"overlap_tokens": 150}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IngestConfig(**bad).validate()


def test_changed_chunk_size_rechunks_and_reuses_vectors(tmp_path: Path, corpus: Path):
    emb = HashEmbedder()
    ingest_paths(tmp_path / "ix", [corpus], IngestConfig(embedder_factory=lambda: emb), progress=False)
    smaller = IngestConfig(embedder_factory=lambda: emb, target_tokens=60, overlap_tokens=8)
    rep = ingest_paths(tmp_path / "ix", [corpus], smaller, progress=False)
    assert rep.files_changed == 3 and rep.chunks_added > rep.chunks_removed
    # another overlap re-chunks every file, but chunks whose text is unchanged keep their vectors
    calls = emb.calls
    rep2 = ingest_paths(
        tmp_path / "ix",
        [corpus],
        IngestConfig(embedder_factory=lambda: emb, target_tokens=60, overlap_tokens=4),
        progress=False,
    )
    assert rep2.files_changed == 3 and rep2.chunks_added == rep.chunks_added
    assert rep2.chunks_embedded == 0 and emb.calls == calls


def test_progress_output_goes_to_stderr(tmp_path: Path, corpus: Path, cfg: IngestConfig, capsys):
    (corpus / "blob.bin").write_bytes(b"\x00" * 100)
    ingest_paths(tmp_path / "ix", [corpus], cfg, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "skipped" in err and "blob.bin" in err and "chunks/s" in err
    ingest_paths(tmp_path / "ix2", [corpus], cfg, progress=False)
    assert capsys.readouterr() == ("", "")


def test_hnsw_above_exact_max(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    cfg.dense_exact_max = 2
    ingest_paths(tmp_path / "ix", [corpus], cfg, progress=False)
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().dense_kind == "hnsw"
        probe = ix.get_chunks([1])[0]
        got = ix.search_dense(f"{probe.title}: {probe.section.split(' | ')[0]}\n{probe.text}", 2)
        assert got[0][0] == probe.id


def test_import_is_light():
    import subprocess
    import sys

    heavy = "{'torch', 'faiss', 'bm25s', 'sentence_transformers', 'transformers'}"
    code = f"import sys, gdn2_ingest; print({heavy} & set(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()"


def test_ticket_and_mail_chunks_cite_lines_inside_the_file(tmp_path: Path, cfg: IngestConfig):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "t.csv").write_text(
        "id,subject,description\n7,Broken link,The pricing link is 404\n8,Dark,Add dark mode\n"
    )
    (docs / "m.eml").write_text(
        "Subject: Printer\nFrom: a@example.com\nTo: b@example.com\n\nPrinter offline.\n"
    )
    ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        for path, n_lines in (("t.csv", 3), ("m.eml", 5)):
            for c in ix.get_chunks(_ids_for_path(ix, path)):
                assert 1 <= c.line_start <= c.line_end <= n_lines, c.citation
        assert [c.citation.rsplit(":", 1)[1] for c in ix.get_chunks(_ids_for_path(ix, "t.csv"))] == [
            "2-2",
            "3-3",
        ]


def test_first_ingest_of_an_empty_folder_creates_an_empty_index(tmp_path: Path, cfg: IngestConfig):
    # it used to write nothing, so the next `Index.open` said "no finished index" right after ingest
    (tmp_path / "empty").mkdir()
    rep = ingest_paths(tmp_path / "ix", [tmp_path / "empty"], cfg, progress=False)
    assert rep.generation and rep.chunks_total == 0
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().chunks == 0 and ix.search_bm25("anything", 3) == []
        assert ix.search_dense("anything", 3) == []
    again = ingest_paths(tmp_path / "ix", [tmp_path / "empty"], cfg, progress=False)
    assert (again.generation, again.changed) == (rep.generation, False)


def test_symlinks_and_unreadable_files_are_reported(tmp_path: Path, cfg: IngestConfig, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Alpha policy text about refunds.\n")
    (docs / "locked.txt").write_text("Secret text.\n")
    (docs / "alias.txt").symlink_to(docs / "a.txt")
    (docs / "dangling.txt").symlink_to(docs / "gone.txt")
    (docs / "loop1").symlink_to(docs / "loop2")
    (docs / "loop2").symlink_to(docs / "loop1")
    real_read = Path.read_bytes

    def read_bytes(self):
        # chmod 000 does not stop root, so the failure is simulated
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    rep = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    reasons = {Path(s.path).name: s.reason for s in rep.skipped}
    assert reasons == {
        "dangling.txt": "broken symlink (missing target or a loop)",
        "loop1": "broken symlink (missing target or a loop)",
        "loop2": "broken symlink (missing target or a loop)",
        "locked.txt": "unreadable (Permission denied)",
    }
    assert [(Path(d.path).name, d.reason) for d in rep.duplicates] == [
        ("alias.txt", f"same file as {docs / 'a.txt'}")
    ]
    assert rep.files_seen == rep.files_new + len(rep.skipped) == 5


def test_skipped_paths_with_brackets_are_printed_as_is(tmp_path: Path, cfg: IngestConfig, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "[bold]notes.txt").write_text("")
    (docs / "ok.txt").write_text("Some text.\n")
    ingest_paths(tmp_path / "ix", [docs], cfg, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert f"skipped {docs / '[bold]notes.txt'}: empty file\n" in err


def test_skipped_files_are_retried_when_the_limits_or_loaders_change(tmp_path: Path, cfg: IngestConfig):
    # a skip was remembered for good: raising max_file_bytes (or loaders learning gzip) changed nothing
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "big.txt").write_text("Large manual about quokka care. " * 40)
    (docs / "blob.txt").write_bytes(b"\x00\x01" * 50)
    small = IngestConfig(embedder_factory=cfg.embedder_factory, lock_timeout=5, max_file_bytes=100)
    first = ingest_paths(tmp_path / "ix", [docs], small, progress=False)
    assert sorted(Path(s.path).name for s in first.skipped) == ["big.txt", "blob.txt"]
    same = ingest_paths(tmp_path / "ix", [docs], small, progress=False)
    assert not same.changed and len(same.skipped) == 2
    second = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert second.files_changed == 1 and [Path(s.path).name for s in second.skipped] == ["blob.txt"]
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        assert ix.search_bm25("quokka", 3)
    # an index written before skips were keyed (or by older loaders) retries them once
    manifest = json.loads((tmp_path / "ix" / second.generation / "manifest.json").read_text())
    del manifest["skips"]
    (tmp_path / "ix" / second.generation / "manifest.json").write_text(json.dumps(manifest))
    third = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert third.changed and [Path(s.path).name for s in third.skipped] == ["blob.txt"]
    assert not ingest_paths(tmp_path / "ix", [docs], cfg, progress=False).changed


def test_other_record_fields_reload_record_files(tmp_path: Path, cfg: IngestConfig):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "t.csv").write_text("id,subject,description\n7,Broken link,The pricing link is 404\n")
    ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    only = IngestConfig(
        embedder_factory=cfg.embedder_factory, lock_timeout=5, record_text_fields=["description"]
    )
    rep = ingest_paths(tmp_path / "ix", [docs], only, progress=False)
    assert rep.files_changed == 1
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        (chunk,) = ix.get_chunks(_ids_for_path(ix, "t.csv"))
        assert chunk.text == "description: The pricing link is 404\n".strip()
