"""An index whose dense vectors live in Qdrant (embedded, as --qdrant-path runs it) against its FAISS
twin built from the same files: the same dense and keyword results after a first ingest, an edit, a
removal and a compaction; filters pushed into Qdrant; a writer killed between writing its points and
switching the generation leaves the previous results; the manifest owns the choice of store."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ingest_fakes import HashEmbedder
from twins import QUERIES, configs, write_corpus

from gdn2_ingest import Index, ingest_paths, store
from gdn2_ingest.config import VectorStoreConfig
from gdn2_ingest.errors import VectorStoreError
from gdn2_ingest.segments_write import compact_index, remove_paths
from gdn2_ingest.vectorstores import Where

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("qdrant_client") is None,
                       reason="qdrant-client is not installed: pip install 'gdn2-rag[qdrant]'"),
    pytest.mark.filterwarnings("ignore:Local mode:UserWarning"),
]  # fmt: skip
WORKER = Path(__file__).parent / "qdrant_worker.py"


@pytest.fixture
def twins(tmp_path: Path):
    emb = HashEmbedder()
    docs = write_corpus(tmp_path / "docs")
    fcfg, qcfg = configs(tmp_path, emb)
    t = SimpleNamespace(tmp=tmp_path, emb=emb, docs=docs, fcfg=fcfg, qcfg=qcfg,
                        faiss=tmp_path / "ix-faiss", qdrant=tmp_path / "ix-qdrant")  # fmt: skip
    t.both = lambda fn, *a: (fn(t.faiss, *a, t.fcfg), fn(t.qdrant, *a, t.qcfg))
    t.both(lambda ix, cfg: ingest_paths(ix, [docs], cfg, progress=False))
    return t


def results(index_dir: Path, emb) -> list:
    """Per query: the whole dense ranking and the BM25 top-10, as (id, score) lists."""
    with Index.open(index_dir, embedder=emb) as ix:
        return [(ix.search_dense(q, 1000), ix.search_bm25(q, 10)) for q in QUERIES]


def assert_same(a: list, b: list) -> None:
    for (da, ba), (db, bb) in zip(a, b, strict=True):
        assert [i for i, _ in da] == [i for i, _ in db]
        np.testing.assert_allclose([s for _, s in da], [s for _, s in db], atol=1e-5)
        assert ba == bb


def points(t) -> int:
    from gdn2_ingest.dense_qdrant import connect, recorded

    manifest = store.read_manifest(store.current_generation(t.qdrant))
    s = connect(recorded(manifest), t.emb.dim)
    try:
        return s.count()
    finally:
        s.close()


def test_same_results_through_edit_remove_and_compact(twins):
    t = twins
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    # an edit and a new file
    with open(t.docs / "legal" / "legal1.txt", "a") as f:
        f.write("\n\nA new clause on termination for convenience with ninety days notice.\n")
    (t.docs / "support" / "new.md").write_text("# New\n\nReset the router when the network drops.\n")
    t.both(lambda ix, cfg: ingest_paths(ix, [t.docs], cfg, progress=False))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    # a removal: tombstoned, the points stay (marked dead) until a compaction drops them
    t.both(lambda ix, cfg: remove_paths(ix, [t.docs / "support" / "support2.md"], cfg))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        stats = ix.stats()
        assert stats.deleted_chunks > 0 and stats.dense_kind == "qdrant"
        assert stats.vector_store.startswith("qdrant collection gdn2-ix-qdrant-")
    assert points(t) == stats.chunks + stats.deleted_chunks
    t.both(lambda ix, cfg: compact_index(ix, cfg))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    assert points(t) == stats.chunks
    # the store is recorded in every Qdrant generation, never in a FAISS one
    qm = store.read_manifest(store.current_generation(t.qdrant))
    fm = store.read_manifest(store.current_generation(t.faiss))
    assert qm["vector_store"]["kind"] == "qdrant" and qm["vector_store"]["path"] == str(t.tmp / "qdrant")
    assert "vector_store" not in fm and "vector_store" not in fm["config"]
    assert not list((t.qdrant / "segments").glob("*/dense.faiss"))


def assert_exact_top(got: list[tuple[int, float]], faiss_dir: Path, emb, query: str, keep, k: int) -> None:
    """`got` is an exact top-k of the live chunks `keep(chunk)` admits (float64 scores of the FAISS
    twin's vectors): the k best scores in order, each hit one of the admitted chunks with that score
    (chunks tied with the k-th may stand in for each other, as in any top-k)."""
    with Index.open(faiss_dir, embedder=emb) as ix:
        ids = ix.chunk_ids()
        ok = np.array([keep(c) for c in ix.get_chunks([int(i) for i in ids])], dtype=bool)
        score = dict(
            zip(
                ids[ok].tolist(),
                (ix.vectors(ids[ok]).astype(np.float64) @ ix.embed_query(query).astype(np.float64)).tolist(),
                strict=True,
            )
        )
    best = sorted(score.values(), reverse=True)[:k]
    assert len(got) == len(best) and len({i for i, _ in got}) == len(got)
    np.testing.assert_allclose([s for _, s in got], best, atol=1e-5)
    assert all(abs(score[i] - s) < 1e-5 for i, s in got)


def test_filters_are_pushed_into_qdrant(twins):
    t = twins
    legal1, code = str(t.docs / "legal" / "legal1.txt"), str(t.docs / "code")
    cases = [
        (Where(domain="legal"), lambda c: c.domain == "legal"),
        (Where(any_paths=(legal1, code)), lambda c: c.path == legal1 or c.path.startswith(code + "/")),
        (Where(domain="support", any_paths=(code,)), lambda c: False),
        (Where(any_paths=()), lambda c: False),
    ]
    with Index.open(t.qdrant, embedder=t.emb) as ix, Index.open(t.faiss, embedder=t.emb) as fx:
        assert ix.filters_dense and not fx.filters_dense
        for where, keep in cases:
            for q in QUERIES[:3]:
                assert_exact_top(ix.search_dense(q, 10, where), t.faiss, t.emb, q, keep, 10)
        # FAISS ranks every chunk (the caller filters after fusion)
        assert fx.search_dense(QUERIES[0], 10, Where(domain="code")) == fx.search_dense(QUERIES[0], 10)


def test_killed_between_points_and_switch_leaves_the_previous_generation(twins):
    t = twins
    before = results(t.qdrant, t.emb)
    live = store.current_generation(t.qdrant).name
    n_before = points(t)
    (t.docs / "legal" / "legal0.txt").write_text("# legal 0\n\nRewritten: arbitration in Geneva.\n")
    (t.docs / "code" / "mod3.py").unlink()
    run = subprocess.run([sys.executable, str(WORKER), str(t.qdrant), str(t.docs), str(t.tmp)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 9, run.stderr[-2000:]
    # the killed writer wrote its points and marks; the live generation does not see them
    assert store.current_generation(t.qdrant).name == live
    assert points(t) > n_before
    assert_same(before, results(t.qdrant, t.emb))
    # the next writer removes what the killed one left, then does the same update
    t.both(lambda ix, cfg: ingest_paths(ix, [t.docs], cfg, progress=False))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        assert points(t) == ix.stats().chunks + ix.stats().deleted_chunks


def test_failed_compaction_leaves_the_previous_generation(twins, monkeypatch):
    t = twins
    t.both(lambda ix, cfg: remove_paths(ix, [t.docs / "legal" / "legal2.txt"], cfg))
    before = results(t.qdrant, t.emb)

    class Killed(BaseException):
        pass

    def killed(*_a, **_k):
        raise Killed

    # the dead chunks' points are deleted before the switch: still invisible to the live generation
    with monkeypatch.context() as m:
        m.setattr(store, "publish", killed)
        with pytest.raises(Killed):
            compact_index(t.qdrant, t.qcfg)
    assert_same(before, results(t.qdrant, t.emb))
    t.both(lambda ix, cfg: compact_index(ix, cfg))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))


def test_the_manifest_owns_the_store(twins):
    t = twins
    # no store named: the recorded one
    (t.docs / "legal" / "extra.txt").write_text("# Extra\n\nWarranty claims expire after a year.\n")
    ingest_paths(t.qdrant, [t.docs], t.fcfg, progress=False)
    assert store.read_manifest(store.current_generation(t.qdrant))["vector_store"]["kind"] == "qdrant"
    with pytest.raises(VectorStoreError, match=r"keeps its vectors in faiss, not qdrant .*does not switch"):
        ingest_paths(t.faiss, [t.docs], t.qcfg, progress=False)
    other = VectorStoreConfig("qdrant", path=str(t.tmp / "elsewhere"))
    with pytest.raises(VectorStoreError, match=r"\(path differs\)"):
        remove_paths(t.qdrant, [t.docs / "legal" / "extra.txt"], type(t.qcfg)(vector_store=other))
    # a new index cannot take a collection that holds another index's points
    taken = store.read_manifest(store.current_generation(t.qdrant))["vector_store"]["collection"]
    cfg = type(t.qcfg)(
        embedder_factory=lambda: t.emb,
        vector_store=VectorStoreConfig("qdrant", path=str(t.tmp / "qdrant"), collection=taken),
    )
    with pytest.raises(VectorStoreError, match=f"{taken} .* already holds .* points of another index"):
        ingest_paths(t.tmp / "ix-new", [t.docs], cfg, progress=False)
    assert store.current_generation(t.tmp / "ix-new") is None


def test_an_embedded_folder_open_in_another_process(twins):
    t = twins
    hold = ("import sys, time; from qdrant_client import QdrantClient; c = QdrantClient(path=sys.argv[1]);"
            " print('ready', flush=True); time.sleep(60)")  # fmt: skip
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(t.tmp / "qdrant")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(
            VectorStoreError, match=f"folder {t.tmp / 'qdrant'} is open in another process; embedded Qdrant"
        ):
            Index.open(t.qdrant, embedder=t.emb)
    finally:
        holder.kill()
        holder.wait()
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        assert ix.search_dense(QUERIES[0], 3)


def test_manifest_record_round_trip(tmp_path: Path):
    cfg = VectorStoreConfig("qdrant", url="http://q:6333/", collection="docs").validate().resolved(tmp_path)
    assert (
        cfg.url == "http://q:6333"
        and VectorStoreConfig.from_record(json.loads(json.dumps(cfg.to_record()))) == cfg
    )
    assert VectorStoreConfig().to_record() is None and VectorStoreConfig.from_record(None).kind == "faiss"
    with pytest.raises(ValueError, match="may hold only letters"):
        VectorStoreConfig("qdrant", path="x", collection="a/b").validate()
    with pytest.raises(ValueError, match="API key file needs a server url"):
        VectorStoreConfig("qdrant", path="x", api_key_file="k").validate()


def test_a_file_name_that_is_not_utf8(twins):
    t = twins
    name = os.fsdecode(b"caf\xe9 notes.txt")
    (t.docs / "legal" / name).write_text(
        "# Cafe\n\nThe cafe lease ends with ninety days termination notice.\n"
    )
    t.both(lambda ix, cfg: ingest_paths(ix, [t.docs], cfg, progress=False))
    assert_same(results(t.faiss, t.emb), results(t.qdrant, t.emb))
    path = str(t.docs / "legal" / name)
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        hits = ix.search_dense("cafe lease", 5, Where(any_paths=(path,)))
        assert hits and {c.path for c in ix.get_chunks([i for i, _ in hits])} == {path}


def test_an_open_index_keeps_its_generation_while_this_process_writes(twins):
    """Embedded Qdrant leaves out the generation filter while the collection holds exactly the open
    generation's points (dense_qdrant.SearchFilter); a write of this process brings it back."""
    t = twins
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        assert ix._filter.current() is None
        before = [ix.search_dense(q, 1000) for q in QUERIES]
        (t.docs / "legal" / "legal0.txt").write_text("# legal 0\n\nTermination notice: none at all.\n")
        ingest_paths(t.qdrant, [t.docs], t.qcfg, progress=False)
        remove_paths(t.qdrant, [t.docs / "support" / "support0.md"], t.qcfg)
        assert ix._filter.current() is not None
        assert [ix.search_dense(q, 1000) for q in QUERIES] == before
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        # tombstoned chunks' points are still there (marked): the filter stays on until a compaction
        assert ix._filter.current() is not None
    compact_index(t.qdrant, t.qcfg)
    with Index.open(t.qdrant, embedder=t.emb) as ix:
        assert ix._filter.current() is None
