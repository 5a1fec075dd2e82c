"""Crash safety and concurrency: a killed ingest leaves the previous index usable; writers take turns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gdn2_ingest import Index, IndexLockedError, IndexNotFoundError, ingest_paths

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _spawn(index: Path, src: Path, delay: float, marker: Path) -> subprocess.Popen:
    """An ingest in another process whose fake embedder sleeps `delay` per batch and touches `marker`."""
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]\n"
        "from ingest_fakes import HashEmbedder\n"
        "from gdn2_ingest import IngestConfig, ingest_paths\n"
        f"emb = HashEmbedder(delay={delay}, marker={str(marker)!r})\n"
        "cfg = IngestConfig(embedder_factory=lambda: emb, batch_size=1, lock_timeout=60)\n"
        f"r = ingest_paths({str(index)!r}, [{str(src)!r}], cfg, progress=False)\n"
        "print('done', r.chunks_total)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ingest exited early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("ingest never reached embedding")
        time.sleep(0.05)


def _many_paragraphs(path: Path, n: int, word: str) -> None:
    path.write_text("\n\n".join(f"Paragraph {i} about {word} number {i}. " * 30 for i in range(n)))


def _consistent(ix: Index) -> int:
    n = ix.stats().chunks
    ids = [int(i) for i in ix.chunk_ids()]
    assert len(ids) == n == sum(s.dense.ntotal - s.dense.n_dead for s in ix.segments)
    assert sum(s.keyword.live_docs for s in ix.segments) == n
    assert len(ix.get_chunks(ids)) == n
    return n


def test_killed_mid_embedding_leaves_previous_index_usable(tmp_path: Path, corpus: Path, cfg):
    ix_dir = tmp_path / "ix"
    first = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    _many_paragraphs(corpus / "support" / "big.txt", 12, "walruses")
    (corpus / "legal" / "msa.txt").unlink()
    marker = tmp_path / "embedding-started"
    proc = _spawn(ix_dir, corpus, delay=60, marker=marker)
    _wait_for(marker, proc)
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(p.name.startswith("seg-000002.tmp") for p in (ix_dir / "segments").iterdir()), (
        "the kill hit a half-built segment"
    )
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.generation.name == first.generation
        assert _consistent(ix) == first.chunks_total
        assert ix.search_bm25("walruses", 3) == []
        assert ix.search_bm25("Confidential Information", 3), (
            "the deleted file is still served from the old generation"
        )
        assert ix.search_dense("reset password", 3)
    # a re-run completes: removes the leftovers, applies add and delete
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert rep.changed and rep.files_new == 1 and rep.files_deleted == 1
    assert not any(".tmp" in p.name for p in [*ix_dir.iterdir(), *(ix_dir / "segments").iterdir()])
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        _consistent(ix)
        assert ix.search_bm25("walruses", 3) and ix.search_bm25("Confidential Information", 3) == []


def test_killed_first_ingest_leaves_no_index_then_rerun_works(tmp_path: Path, corpus: Path, cfg):
    ix_dir = tmp_path / "ix"
    marker = tmp_path / "embedding-started"
    proc = _spawn(ix_dir, corpus, delay=60, marker=marker)
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(IndexNotFoundError):
        Index.open(ix_dir)
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert _consistent(ix) == rep.chunks_total > 0


def test_concurrent_ingest_waits_or_fails_clearly(tmp_path: Path, corpus: Path, cfg):
    ix_dir = tmp_path / "ix"
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    reader = Index.open(ix_dir, embedder=cfg.embedder_factory())
    before = _consistent(reader)
    other = tmp_path / "other"
    other.mkdir()
    _many_paragraphs(other / "slow.txt", 6, "narwhals")
    marker = tmp_path / "embedding-started"
    proc = _spawn(ix_dir, other, delay=3, marker=marker)
    _wait_for(marker, proc)
    # the lock is held: a second writer with a short timeout fails with a clear message
    (corpus / "extra.md").write_text("# Extra\n\nOtters hold hands while sleeping.\n")
    cfg.lock_timeout = 0.3
    with pytest.raises(IndexLockedError, match=r"another ingest \(pid \d+\) is writing"):
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    # one that may wait gets its turn after the first finishes
    cfg.lock_timeout = 60
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert rep.files_new == 1
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        n = _consistent(ix)
        assert ix.search_bm25("narwhals", 1) and ix.search_bm25("otters", 1)
        assert n > before
    # a reader opened before both switches still sees its generation, whole
    assert _consistent(reader) == before
    reader.close()
