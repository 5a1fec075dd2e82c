"""Robustness of an ingest: damaged segments, a bad --index path, a full disk, the lock holder's PID,
one generation on disk. Each failure is a user error (IngestError); the live generation stays as it was."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdn2_ingest import Index, IndexLockedError, ingest_paths, store
from gdn2_ingest.errors import DiskSpaceError, IndexBrokenError, IndexPathError, IngestError
from gdn2_ingest.index import check_generation

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _gens(ix_dir: Path) -> list[str]:
    return sorted(p.name for p in ix_dir.iterdir() if p.name.startswith("gen-"))


def _snapshot(ix_dir: Path) -> dict[str, int]:
    """Every file of the index folder (but the lock) with its size and mtime: 'untouched' means equal."""
    return {
        str(p.relative_to(ix_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(ix_dir.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.fixture
def built(tmp_path: Path, corpus: Path, cfg):
    ix_dir = tmp_path / "ix"
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    return ix_dir, ix_dir / rep.generation, rep


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _segment(ix_dir: Path, gen_name: str) -> Path:
    """The newest segment of a generation."""
    return ix_dir / "segments" / store.read_manifest(ix_dir / gen_name)["segments"][-1]


@pytest.mark.parametrize(
    "damage",
    ["faiss-truncated", "faiss-garbage", "keyword-vocab", "keyword-ids", "docstore"],
)
def test_damaged_live_generation_is_a_user_error_and_left_as_is(built, corpus: Path, cfg, damage):
    ix_dir, live, _ = built
    gen = _segment(ix_dir, live.name)
    name = {"faiss-truncated": "dense.faiss", "faiss-garbage": "dense.faiss", "keyword-vocab": "keyword",
            "keyword-ids": "keyword", "docstore": "docstore.sqlite"}[damage]  # fmt: skip
    if damage == "faiss-truncated":
        _truncate(gen / "dense.faiss", 300)
    elif damage == "faiss-garbage":  # same size, so only loading it tells
        size = (gen / "dense.faiss").stat().st_size
        (gen / "dense.faiss").write_bytes(b"\x07" * size)
    elif damage == "keyword-vocab":
        size = (gen / "keyword" / "vocab.json").stat().st_size
        (gen / "keyword" / "vocab.json").write_bytes(b"{" * size)
    elif damage == "keyword-ids":  # same size, so only loading it tells
        size = (gen / "keyword" / "ids.npy").stat().st_size
        (gen / "keyword" / "ids.npy").write_bytes(b"\x00" * size)
    else:
        size = (gen / "docstore.sqlite").stat().st_size
        (gen / "docstore.sqlite").write_bytes(b"\x00" * size)
    before = _snapshot(ix_dir)
    # nothing changed: not "ready" on a damaged generation
    with pytest.raises(IndexBrokenError, match=rf"{gen.name}.*{name}") as exc:
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert "\n" not in str(exc.value)
    # something changed: not built upon either
    (corpus / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    with pytest.raises(IndexBrokenError, match=name):
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    with pytest.raises(IndexBrokenError, match=name):
        Index.open(ix_dir, embedder=cfg.embedder_factory())
    assert _snapshot(ix_dir) == before


def test_index_path_that_is_a_file_is_a_user_error(tmp_path: Path, corpus: Path, cfg):
    f = tmp_path / "notes.txt"
    f.write_text("not an index\n")
    with pytest.raises(IndexPathError, match="is a file, not an index folder"):
        ingest_paths(f, [corpus], cfg, progress=False)
    with pytest.raises(IndexPathError, match="cannot create the index folder"):
        ingest_paths(f / "sub", [corpus], cfg, progress=False)
    assert f.read_text() == "not an index\n"


def test_disk_full_while_writing_the_segment(built, corpus: Path, cfg, monkeypatch):
    ix_dir, gen, first = built
    (corpus / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    before = _snapshot(ix_dir)

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    from gdn2_ingest.docstore import DocStore

    monkeypatch.setattr(DocStore, "add_chunks", full)
    with pytest.raises(DiskSpaceError, match=r"cannot write docstore\.sqlite .*no space left on device") as e:
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert f"generation {gen.name} is unchanged" in str(e.value) and "needs about" in str(e.value)
    monkeypatch.undo()
    assert _snapshot(ix_dir) == before, "the half-built generation was not removed"
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.generation == gen and ix.stats().chunks == first.chunks_total


@pytest.mark.parametrize("where", ["faiss", "keyword", "sqlite"])
def test_file_size_limit_in_each_writer_is_a_disk_error(built, corpus: Path, cfg, where):
    """RLIMIT_FSIZE in a subprocess: the write that crosses it fails with EFBIG, wherever it is."""
    ix_dir, gen, first = built
    big = corpus / "support" / "big.txt"
    big.write_text("\n\n".join(f"Paragraph {i} about walruses and {i} tusks. " * 20 for i in range(300)))
    before = _snapshot(ix_dir)
    # the copy of the docstore fits; the first file that grows past the limit is the one that fails
    limit = {"faiss": 40_000, "keyword": 5_000, "sqlite": 200_000}[where]
    code = (
        f"import sys, resource; sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]\n"
        "from ingest_fakes import HashEmbedder\n"
        "from gdn2_ingest import IngestConfig, ingest_paths\n"
        "from gdn2_ingest.errors import DiskSpaceError\n"
        "import gdn2_ingest.dense as dense, gdn2_ingest.sparse as sparse, gdn2_ingest.docstore as docstore\n"
        f"where = {where!r}\n"
        "emb = HashEmbedder()\n"
        "cfg = IngestConfig(embedder_factory=lambda: emb, lock_timeout=5)\n"
        # the limit is set just before the writer under test runs
        "def limited(mod, name):\n"
        "    orig = getattr(mod, name)\n"
        "    def f(*a, **k):\n"
        f"        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "        return orig(*a, **k)\n"
        "    setattr(mod, name, f)\n"
        "if where == 'faiss': limited(dense, 'save_dense')\n"
        "if where == 'keyword': limited(sparse.Postings, 'save')\n"
        "if where == 'sqlite': limited(docstore.DocStore, 'add_chunks')\n"
        "try:\n"
        f"    ingest_paths({str(ix_dir)!r}, [{str(corpus)!r}], cfg, progress=False)\n"
        "except DiskSpaceError as exc:\n"
        "    print(exc); sys.exit(3)\n"
        "print('no error')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr[-3000:]
    msg = out.stdout.strip()
    print(msg)
    assert "cannot write" in msg and str(ix_dir) in msg and f"generation {gen.name} is unchanged" in msg
    writer = {"faiss": "dense.faiss", "keyword": "keyword", "sqlite": "docstore.sqlite"}[where]
    assert f"cannot write {writer} " in msg and "file-size limit" in msg, msg
    assert _snapshot(ix_dir) == before
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().chunks == first.chunks_total and ix.search_bm25("walruses", 1) == []


def test_new_generation_is_verified_before_the_switch(built, corpus: Path, cfg, monkeypatch):
    ix_dir, gen, first = built
    (corpus / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    import gdn2_ingest.dense as dense

    real_save = dense.save_dense

    def lossy(index, path):  # a writer that silently drops the last vector
        index.remove_ids(np.array([int(dense.faiss_ids(index)[-1])], dtype=np.int64))
        real_save(index, path)

    def faiss_ids(index):
        import faiss

        return faiss.vector_to_array(index.id_map)

    monkeypatch.setattr(dense, "faiss_ids", faiss_ids, raising=False)
    monkeypatch.setattr(dense, "save_dense", lossy)
    with pytest.raises(IndexBrokenError, match=r"dense\.faiss holds \d+ vectors"):
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    monkeypatch.undo()
    assert _gens(ix_dir) == [gen.name] and (ix_dir / "CURRENT").read_text().strip() == gen.name
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().chunks == first.chunks_total
    # and a generation that does verify records its file sizes, so truncation is caught when opened
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    new = ix_dir / rep.generation
    assert check_generation(new)["seconds"] >= 0
    _truncate(_segment(ix_dir, rep.generation) / "keyword" / "docs.npy", 50)
    with pytest.raises(IndexBrokenError, match=r"keyword/docs\.npy has 50 bytes"):
        Index.open(ix_dir)


def test_waiting_ingest_names_the_lock_holder_pid(built, corpus: Path, cfg):
    ix_dir, _, _ = built
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(ix_dir / 'lock')!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
        "print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        said: list[str] = []
        cfg.lock_timeout = 0.5
        (corpus / "new.md").write_text("# New\n\nPenguins.\n")
        with pytest.raises(IndexLockedError, match=rf"pid {holder.pid}"):
            ingest_paths(ix_dir, [corpus], cfg, progress=False, notify=said.append)
        assert len(said) == 1 and f"held by PID {holder.pid}" in said[0] and "waiting" in said[0]
    finally:
        holder.kill()
        holder.wait()
    # our own ingest records our PID while it holds the lock, and clears it after
    seen: list[str] = []
    real_embed = cfg.embedder_factory().embed

    def embed(texts):
        seen.append((ix_dir / "lock").read_text())
        return real_embed(texts)

    cfg.embedder_factory().embed = embed
    cfg.lock_timeout = 5
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert seen and seen[0] == str(os.getpid())
    assert (ix_dir / "lock").read_text() == ""


def test_one_generation_on_disk_unless_a_reader_holds_the_old_one(built, corpus: Path, cfg):
    ix_dir, gen1, _ = built
    (corpus / "a.md").write_text("# A\n\nAardvarks dig burrows.\n")
    rep2 = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert _gens(ix_dir) == [rep2.generation], "the previous generation is still on disk"
    assert rep2.disk["previous_generation_kept"] is False
    reader = Index.open(ix_dir, embedder=cfg.embedder_factory())
    (corpus / "b.md").write_text("# B\n\nBadgers are nocturnal.\n")
    rep3 = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert _gens(ix_dir) == [rep2.generation, rep3.generation], "a generation a reader holds was deleted"
    assert rep3.disk["previous_generation_kept"] is True
    assert reader.search_bm25("aardvarks", 1) and not reader.search_bm25("badgers", 1)
    reader.close()
    (corpus / "c.md").write_text("# C\n\nCapybaras swim.\n")
    rep4 = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert _gens(ix_dir) == [rep4.generation]


def test_locked_generation_is_kept_until_released(built, corpus: Path, cfg):
    """A generation whose manifest is flocked is kept by prune; once released, the next prune deletes it."""
    ix_dir, gen1, _ = built
    with open(gen1 / "manifest.json", "rb") as f:  # what prune holds while it deletes
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        (corpus / "a.md").write_text("# A\n\nAardvarks dig burrows.\n")
        ingest_paths(ix_dir, [corpus], cfg, progress=False)  # its prune skips gen1: locked
        assert gen1.exists()
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.generation != gen1 and ix.search_bm25("aardvarks", 1)
    assert store.prune(ix_dir) == [] and not gen1.exists()


def test_free_space_is_checked_against_an_estimate_first(built, corpus: Path, cfg, monkeypatch):
    ix_dir, gen, first = built
    (corpus / "new.md").write_text("# New\n\nPenguins mate for life.\n" * 50)
    before = _snapshot(ix_dir)
    monkeypatch.setattr(store, "free_bytes", lambda d: 1_000_000)
    with pytest.raises(DiskSpaceError, match=r"this ingest needs about \d+\.\d MB .*1\.0 MB are free"):
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert _snapshot(ix_dir) == before
    monkeypatch.undo()
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    d = rep.disk
    assert d["estimate_bytes"] >= d["segment_bytes"] > 0 and d["free_bytes"] > 0
    assert rep.to_dict()["disk"] == d


def test_estimate_covers_a_real_corpus(tmp_path: Path, cfg):
    """The estimate is an upper bound for a prose + code corpus (measured: ~3x input bytes + vectors)."""
    from gdn2_ingest.pipeline import estimate_bytes

    src = tmp_path / "src"
    src.mkdir()
    for i, p in enumerate(sorted((ROOT / "gdn2_ingest").rglob("*.py"))[:12]):
        (src / f"m{i}.py").write_text(p.read_text())
    clause = "Clause {i}. The party shall notify the other in writing within {i} days of any change. "
    (src / "prose.md").write_text("\n\n".join(clause.format(i=i) * 3 for i in range(200)))
    rep = ingest_paths(tmp_path / "ix", [src], cfg, progress=False)
    size = sum(p.stat().st_size for p in src.iterdir())
    assert estimate_bytes(0, size, 256) >= rep.disk["generation_bytes"]
    assert rep.disk["estimate_bytes"] == estimate_bytes(0, size, 256)


def test_errors_are_ingest_errors():
    for cls in (DiskSpaceError, IndexBrokenError, IndexPathError):
        assert issubclass(cls, IngestError)


def test_reader_racing_a_prune_opens_the_new_generation(built, corpus: Path, cfg, monkeypatch):
    """A reader that read CURRENT just before a switch, while prune deletes that generation, retries."""
    ix_dir, gen1, _ = built
    reader = Index.open(ix_dir, embedder=cfg.embedder_factory())  # keeps gen1 on disk through the switch
    (corpus / "a.md").write_text("# A\n\nAardvarks dig burrows.\n")
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    reader.close()
    stale = iter([gen1])
    real = store.require_generation
    monkeypatch.setattr(store, "require_generation", lambda d: next(stale, None) or real(d))
    with open(gen1 / "manifest.json", "rb") as f:  # prune is deleting gen1 right now
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
            assert ix.generation.name == rep.generation and ix.search_bm25("aardvarks", 1)
