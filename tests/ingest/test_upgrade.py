"""`rag upgrade`: a format-2 index (written by the previous release's own code, checked in under
tests/ingest/data/index_v2/, see make_index_v2.py) becomes format 3 without re-embedding, and then
answers exactly as a fresh format-3 ingest of the same files: same chunk ids and rows, same dense
and BM25 top-10 (ids and scores). Ingest upgrades first; read-only opens name `rag upgrade`; a
failing or killed upgrade leaves the old generation live and untouched."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from make_index_v2 import edit_corpus, write_corpus

from gdn2_ingest import Index, IngestConfig, ingest_paths, store, upgrade_index
from gdn2_ingest.errors import (
    DiskSpaceError,
    EmbedderMismatchError,
    IndexBrokenError,
    IndexFormatError,
    IndexLockedError,
    IndexUpgradeNeededError,
)

DATA = Path(__file__).parent / "data" / "index_v2"
ROOT = Path(__file__).resolve().parents[2]
QUERIES = [
    "invoice payment refund",
    "password token encryption",
    "terminate agreement breach",
    "reset my password",
    "proxy firewall timeout",
    "backup restore snapshot",
    "Same closing line",
    "quarter reviewed",
    "def parse config",
    "customer data personal",
]


def _old_index(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A copy of the checked-in format-2 index, its paths moved to a corpus written under tmp_path
    (the same bytes the old release ingested last), and that corpus' folder."""
    src_root = json.loads((DATA / "source.json").read_text())["root"]
    docs = tmp_path / f"docs-{kind}"
    if not docs.exists():
        write_corpus(docs)
        if kind == "hnsw":
            edit_corpus(docs)
    ix = tmp_path / f"old-{kind}"
    shutil.copytree(DATA / kind, ix)
    gen = store.current_generation(ix)
    db = sqlite3.connect(gen / "docstore.sqlite")
    for table in ("files", "documents", "chunks"):
        db.execute(f"UPDATE {table} SET path = replace(path, ?, ?)", (src_root, str(docs)))
    db.commit()
    db.execute("VACUUM")
    db.close()
    m = json.loads((gen / store.MANIFEST).read_text())
    m["files"]["docstore.sqlite"] = (gen / "docstore.sqlite").stat().st_size
    (gen / store.MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=True))
    return ix, docs


def _cfg(**kw) -> IngestConfig:
    from ingest_fakes import HashEmbedder

    emb = HashEmbedder()
    return IngestConfig(embedder_factory=lambda: emb, lock_timeout=5, **kw)


def _snapshot(ix: Path) -> dict:
    return {
        str(p.relative_to(ix)): p.read_bytes()
        for p in sorted(ix.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.mark.parametrize("kind,exact_max", [("flat", 200_000), ("hnsw", 8)])
def test_upgraded_index_answers_as_a_fresh_ingest(tmp_path: Path, kind: str, exact_max: int):
    """flat: one ingest, so even the chunk ids equal a fresh ingest's. hnsw: updated once by the old
    release (ids with gaps), so chunks are matched by content and the id counters must carry over."""
    old, docs = _old_index(tmp_path, kind)
    with pytest.raises(IndexUpgradeNeededError, match="rag upgrade --index"):
        Index.open(old)
    old_ids, old_vectors, old_next = _v2_state(old)
    report = upgrade_index(old)
    assert report.changed and report.from_format == 2 and report.to_format == store.FORMAT_VERSION
    assert report.chunks_total == len(old_ids) == {"flat": 20, "hnsw": 19}[kind]
    fresh = tmp_path / "fresh"
    cfg = _cfg(dense_exact_max=exact_max)
    ingest_paths(fresh, [docs], cfg, progress=False)
    emb = cfg.embedder_factory()
    with Index.open(old, embedder=emb) as a, Index.open(fresh, embedder=emb) as b:
        sa, sb = a.stats(), b.stats()
        assert (sa.format_version, sa.segments, sa.dense_kind) == (store.FORMAT_VERSION, 1, sb.dense_kind)
        assert sa.dense_kind == kind
        for key in ("files", "documents", "chunks", "per_domain"):
            assert getattr(sa, key) == getattr(sb, key), key
        ids = a.chunk_ids()
        assert np.array_equal(ids, old_ids)
        # the rows as they were, and the vectors moved, not recomputed: bit-equal to the old index's
        rows = a.get_chunks(list(ids))
        assert [c.id for c in rows] == list(ids)
        assert np.array_equal(a.vectors(ids), old_vectors)
        assert a.manifest["next_ids"] == old_next
        # the same chunks as a fresh ingest, and the same answers, by content
        key = {c.id: (c.path, c.sub, c.ordinal, c.text) for c in rows}
        fresh_rows = b.get_chunks(list(b.chunk_ids()))
        fkey = {c.id: (c.path, c.sub, c.ordinal, c.text) for c in fresh_rows}
        assert sorted(key.values()) == sorted(fkey.values())
        if kind == "flat":
            assert rows == fresh_rows and a.manifest["next_ids"] == b.manifest["next_ids"]
        for q in QUERIES:
            assert [(key[i], s) for i, s in a.search_dense(q, 10)] == [
                (fkey[i], s) for i, s in b.search_dense(q, 10)
            ]
            assert [(key[i], s) for i, s in a.search_bm25(q, 10)] == [
                (fkey[i], s) for i, s in b.search_bm25(q, 10)
            ]
        assert all(a.search_bm25(q, 10) for q in QUERIES[:3])
        for k in ("embedder", "chunking", "skips", "counts"):
            assert a.manifest[k] == b.manifest[k], k
    # the settings carried over: the next ingest of the same files changes nothing and embeds nothing
    again = ingest_paths(old, [docs], cfg, progress=False)
    assert not again.changed and again.files_unchanged == sa.files and again.chunks_embedded == 0
    # a new file gets ids after every id the old release gave
    (docs / "notes" / "extra.md").write_text("# Extra\n\nA new note on gateway bandwidth.\n")
    ingest_paths(old, [docs], cfg, progress=False)
    with Index.open(old, embedder=emb) as a:
        assert a.chunk_ids()[-1] == old_next["chunk"] and a.stats().segments == 2
    # the old generation is gone, a second upgrade has nothing to do
    assert not (old / report.previous_generation).exists()
    assert upgrade_index(old).changed is False


def _v2_state(ix: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The old generation's chunk ids, their vectors (from its FAISS index) and its id counters."""
    import faiss

    gen = store.current_generation(ix)
    index = faiss.read_index(str(gen / "dense.faiss"))
    ids = np.sort(faiss.vector_to_array(index.id_map))
    db = sqlite3.connect(gen / "docstore.sqlite")
    seq = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    db.close()
    return ids, index.reconstruct_batch(ids), {"chunk": seq["chunks"] + 1, "document": seq["documents"] + 1}


def test_ingest_into_a_format2_index_upgrades_first_and_says_so(tmp_path: Path):
    old, docs = _old_index(tmp_path, "flat")
    (docs / "notes" / "billing-00.md").write_text(
        "# Billing\n\nA brand new refund policy for yearly plans.\n"
    )
    (docs / "notes" / "storage-03.md").unlink()
    said: list[str] = []
    report = ingest_paths(old, [docs], _cfg(), progress=False, notify=said.append)
    assert len(said) == 1 and "format 2 to 3" in said[0] and "no re-embedding" in said[0]
    assert report.stage_seconds["upgrade"] > 0
    assert report.changed and report.files_changed == 1 and report.files_deleted == 1
    assert report.files_unchanged == 17 and report.chunks_embedded == 1
    with Index.open(old, embedder=_cfg().embedder_factory()) as ix:
        assert ix.stats().format_version == store.FORMAT_VERSION
        assert ix.stats().chunks == 19
        top = ix.get_chunks([ix.search_bm25("yearly refund policy", 1)[0][0]])[0]
        assert top.path.endswith("billing-00.md") and "yearly plans" in top.text
        assert not any(c.path.endswith("storage-03.md") for c in ix.get_chunks(list(ix.chunk_ids())))


def test_ingest_with_another_embedder_changes_nothing(tmp_path: Path):
    from ingest_fakes import HashEmbedder

    old, docs = _old_index(tmp_path, "flat")
    before = _snapshot(old)
    other = HashEmbedder(dim=64)
    with pytest.raises(EmbedderMismatchError):
        ingest_paths(
            old, [docs], IngestConfig(embedder_factory=lambda: other, lock_timeout=5), progress=False
        )
    assert _snapshot(old) == before


def test_newer_format_is_refused_clearly(tmp_path: Path):
    old, docs = _old_index(tmp_path, "flat")
    gen = store.current_generation(old)
    m = json.loads((gen / store.MANIFEST).read_text())
    m["format_version"] = store.FORMAT_VERSION + 1
    (gen / store.MANIFEST).write_text(json.dumps(m))
    before = _snapshot(old)
    ingest = lambda: ingest_paths(old, [docs], _cfg(), progress=False)  # noqa: E731
    for call in (lambda: upgrade_index(old), lambda: Index.open(old), ingest):
        with pytest.raises(IndexFormatError, match=f"this version reads {store.FORMAT_VERSION}") as err:
            call()
        assert not isinstance(err.value, IndexUpgradeNeededError)
        assert "rag upgrade" not in str(err.value)
    assert _snapshot(old) == before


@pytest.mark.parametrize("where", ["segment", "check", "publish"])
def test_a_failing_upgrade_leaves_the_old_generation_live(tmp_path: Path, monkeypatch, where: str):
    import gdn2_ingest.upgrade as up

    old, docs = _old_index(tmp_path, "flat")
    before = _snapshot(old)

    def boom(*a, **k):
        raise KeyboardInterrupt  # an interruption, not only an error

    import gdn2_ingest.index as index_mod

    # the segment's dense part, the check of the new generation, the switch of CURRENT
    target = {"segment": (up, "write_segment"), "check": (index_mod, "check_generation"),
              "publish": (store, "publish")}  # fmt: skip
    monkeypatch.setattr(*target[where], boom)
    with pytest.raises(KeyboardInterrupt):
        upgrade_index(old)
    monkeypatch.undo()
    # CURRENT still names the untouched old generation; what the upgrade wrote is gone
    assert _snapshot(old) == before
    with pytest.raises(IndexUpgradeNeededError):
        Index.open(old)
    assert upgrade_index(old).changed
    with Index.open(old, embedder=_cfg().embedder_factory()) as ix:
        assert ix.stats().chunks == 20


def test_damaged_old_generation_is_reported_and_kept(tmp_path: Path):
    old, _ = _old_index(tmp_path, "flat")
    gen = store.current_generation(old)
    dense = gen / "dense.faiss"
    dense.write_bytes(dense.read_bytes()[:-100])
    before = _snapshot(old)
    with pytest.raises(IndexBrokenError, match="dense.faiss"):
        upgrade_index(old)
    assert _snapshot(old) == before


def test_too_little_disk_space_is_refused_before_writing(tmp_path: Path, monkeypatch):
    old, _ = _old_index(tmp_path, "flat")
    before = _snapshot(old)
    monkeypatch.setattr(store, "free_bytes", lambda d: 1000)
    with pytest.raises(DiskSpaceError, match="upgrade"):
        upgrade_index(old)
    assert _snapshot(old) == before


def test_upgrade_waits_for_the_index_lock(tmp_path: Path):
    old, _ = _old_index(tmp_path, "flat")
    with store.IndexLock(old, timeout=1), pytest.raises(IndexLockedError):
        upgrade_index(old, lock_timeout=0.3)


def test_library_rag_upgrade(tmp_path: Path):
    from gdn2_rag import RAG
    from gdn2_rag.errors import RagError

    old, _ = _old_index(tmp_path, "flat")
    with pytest.raises(RagError, match=r"run `rag upgrade --index .*` \(no re-embedding\)"):
        RAG.open(old)
    rag = RAG.open(old, create=True, embedder=_cfg().embedder_factory())
    assert rag.upgrade().changed
    assert rag.info().chunks == 20 and rag.info().format_version == store.FORMAT_VERSION


DRIVER = (
    f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]\n"
    "from ingest_fakes import HashEmbedder\n"
    "import gdn2_ingest.pipeline as pipeline\n"
    "emb = HashEmbedder()\n"
    "pipeline.build_embedder = lambda *a, **k: emb\n"
    "import gdn2_cli; gdn2_cli.main()\n"
)


def _rag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, timeout=180)


def test_cli(tmp_path: Path):
    old, docs = _old_index(tmp_path, "flat")
    for cmd in (["search", "refund"], ["info"], ["ask", "how do I get a refund?"]):
        out = _rag(*cmd, "--index", str(old))
        assert out.returncode == 2, out.stderr
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"run `rag upgrade --index {old}` (no re-embedding)" in lines[0].replace("\n", "")
    out = _rag("upgrade", "--index", str(old), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    assert report["changed"] and report["from_format"] == 2 and report["chunks_total"] == 20
    out = _rag("upgrade", "--index", str(old))
    assert out.returncode == 0 and "already format 3" in out.stdout, out.stderr
    out = _rag("info", "--index", str(old), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["chunks"] == 20, out.stdout + out.stderr
    missing = _rag("upgrade", "--index", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no index at" in missing.stderr and "Traceback" not in missing.stderr
    # ingest into another format-2 copy: one line says it upgrades first
    old2, _ = _old_index(tmp_path, "hnsw")
    out = _rag("ingest", str(docs), "--index", str(old2))
    assert out.returncode == 0, out.stderr
    assert sum("from format 2 to 3 first (no re-embedding)" in x for x in out.stderr.splitlines()) == 1


# runs an upgrade that stops (sleeps, to be killed) at the nth call of a function, before or after it
KILL_DRIVER = (
    f"import sys, time; sys.path[:0] = [{str(ROOT)!r}]\n"
    "import gdn2_ingest.store as store, gdn2_ingest.upgrade as up\n"
    "ix, name, nth, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]\n"
    "mod = store if name in ('publish', 'prune') else up\n"
    "orig, calls = getattr(mod, name), []\n"
    "def stop():\n"
    "    print('stopped', flush=True)\n"
    "    time.sleep(120)\n"
    "def wrapped(*a, **k):\n"
    "    calls.append(1)\n"
    "    if len(calls) == nth and when == 'before': stop()\n"
    "    out = orig(*a, **k)\n"
    "    if len(calls) == nth and when == 'after': stop()\n"
    "    return out\n"
    "setattr(mod, name, wrapped)\n"
    "up.upgrade_index(ix)\n"
)

# (function, call, before/after): the segment half written, sealed, the generation checked but not
# switched to, CURRENT switched but the old generation not yet deleted
KILL_POINTS = [("write_segment", 1, "before"), ("seal_segment", 1, "after"), ("publish", 1, "before"),
               ("prune", 2, "before")]  # fmt: skip


def test_kill9_during_upgrade_leaves_a_usable_index(tmp_path: Path):
    """kill -9 at each stage: the index is either the untouched format-2 generation or the finished
    upgrade, never in between; the next upgrade finishes (or finds nothing to do) and cleans up."""
    old, _ = _old_index(tmp_path, "flat")
    pristine = _snapshot(old)
    states = []
    for i, (name, nth, when) in enumerate(KILL_POINTS):
        ix = tmp_path / f"kill-{i}"
        shutil.copytree(old, ix)
        args = [sys.executable, "-c", KILL_DRIVER, str(ix), name, str(nth), when]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "stopped"
        proc.kill()
        proc.wait()
        gen = store.current_generation(ix)
        if json.loads((gen / store.MANIFEST).read_text())["format_version"] == 2:
            states.append("old")
            # the old generation is untouched and still what readers get
            assert {k: v for k, v in _snapshot(ix).items() if k in pristine} == pristine
            with pytest.raises(IndexUpgradeNeededError):
                Index.open(ix)
        else:
            states.append("new")
            with Index.open(ix, embedder=_cfg().embedder_factory()) as opened:
                assert opened.stats().chunks == 20
        report = upgrade_index(ix)
        assert report.changed == (states[-1] == "old")
        with Index.open(ix, embedder=_cfg().embedder_factory()) as opened:
            assert opened.stats().chunks == 20
        # no leftovers: one generation, its one segment
        assert sorted(p.name for p in ix.iterdir()) == ["CURRENT", report.generation, "lock", "segments"]
        assert len(list((ix / "segments").iterdir())) == 1
    assert states == ["old", "old", "old", "new"]
