"""Segments: search over segments with tombstones equals one index rebuilt from the live chunks (BM25
with global statistics, exact dense), an edit writes one segment, `remove` and `compact` keep results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gdn2_ingest import Index, IngestConfig, ingest_paths, store
from gdn2_ingest.dense import FaissSegment
from gdn2_ingest.segments_write import NotInIndexError, compact_index, remove_paths
from gdn2_ingest.sparse import KeywordSegment, Postings, search_segments

WORDS = [f"w{i}" for i in range(60)]


def _rows(rng: np.random.Generator, n: int, start: int = 1) -> list[tuple[int, str, str, str, str]]:
    """Chunks of 3-30 Zipf-ish words: many shared terms, varied lengths, some duplicate texts."""
    rows = []
    for i in range(n):
        k = int(rng.integers(3, 30))
        text = " ".join(WORDS[min(int(x), 59)] for x in rng.zipf(1.3, size=k))
        rows.append((start + i, f"/d/f{i % 7}.txt", "title", "", text))
    return rows


def _queries(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS[:30], size=int(rng.integers(1, 4)))) for _ in range(n)]


def test_one_segment_scores_equal_bm25s():
    import bm25s

    rng = np.random.default_rng(0)
    rows = _rows(rng, 200)
    seg = KeywordSegment(Postings.build(rows))
    ref = bm25s.BM25()
    ref.index(
        bm25s.tokenize([f"{t}\n{s}\n{x}" for _, _, t, s, x in rows], show_progress=False), show_progress=False
    )
    for q in ["w1 w2", "w7", "w3 w11 w29", "title w0"]:
        ours = dict(search_segments([seg], q, 200))
        docs, scores = ref.retrieve(bm25s.tokenize([q], show_progress=False), k=200, show_progress=False)
        theirs = {rows[d][0]: float(s) for d, s in zip(docs[0], scores[0], strict=True) if s > 0}
        assert ours.keys() == theirs.keys() and ours
        assert max(abs(ours[i] - theirs[i]) for i in ours) < 1e-4


@pytest.mark.parametrize(("seed", "overfetch_max"), [(1, 4096), (2, 4096), (3, 0)])
def test_segments_with_tombstones_equal_one_rebuilt_index(seed: int, overfetch_max: int, monkeypatch):
    """4 segments, ~30 % of chunks dead: BM25 scores and dense hits equal one index of the live chunks
    (dead vectors dropped from an over-fetch, or excluded by a FAISS selector)."""
    import gdn2_ingest.dense

    monkeypatch.setattr(gdn2_ingest.dense, "OVERFETCH_MAX_DEAD", overfetch_max)
    rng = np.random.default_rng(seed)
    rows = _rows(rng, 400)
    vecs = rng.standard_normal((400, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.array([r[0] for r in rows])
    dead = ids[rng.random(400) < 0.3]
    cuts = [0, 50, 170, 390, 400]
    kw, dense = [], []
    for a, b in zip(cuts, cuts[1:], strict=False):
        mine = dead[(dead >= ids[a]) & (dead <= ids[b - 1])]
        kw.append(KeywordSegment(Postings.build(rows[a:b]), mine))
        dense.append(FaissSegment.build(ids[a:b], vecs[a:b], 16, exact_max=1000))
        dense[-1] = FaissSegment(dense[-1].index, mine)
    live = ~np.isin(ids, dead)
    one_kw = [KeywordSegment(Postings.build([r for r, ok in zip(rows, live, strict=True) if ok]))]
    one_dense = FaissSegment.build(ids[live], vecs[live], 16, exact_max=1000)
    for q in _queries(rng, 40):
        got, want = search_segments(kw, q, 10), search_segments(one_kw, q, 10)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-12, atol=0)
        assert not set(i for i, _ in got) & set(dead.tolist())
    for qv in rng.standard_normal((20, 16)).astype(np.float32):
        hits = sorted((h for d in dense for h in d.search(qv, 10)), key=lambda h: (-h[1], h[0]))[:10]
        assert hits == one_dense.search(qv, 10)


def test_postings_merge_equals_a_build():
    rng = np.random.default_rng(4)
    rows = _rows(rng, 150)
    a, b = Postings.build(rows[:80]), Postings.build(rows[80:])
    keep_a, keep_b = rng.random(80) < 0.7, rng.random(70) < 0.7
    merged = Postings.merge([(a, keep_a), (b, keep_b)])
    kept = [r for r, k in zip(rows, [*keep_a, *keep_b], strict=True) if k]
    built = Postings.build(kept)
    assert np.array_equal(merged.ids, built.ids) and np.array_equal(merged.keys, built.keys)
    for q in _queries(rng, 30):
        assert search_segments([KeywordSegment(merged)], q, 20) == search_segments(
            [KeywordSegment(built)], q, 20
        )


def _keys(ix: Index, hits) -> list[tuple[str, str, float]]:
    by_id = {c.id: c for c in ix.get_chunks([i for i, _ in hits])}
    return [(by_id[i].path, by_id[i].text, round(s, 9)) for i, s in hits]


def _results(ix: Index, emb, queries: list[str]):
    return [(ix.search_bm25(q, 10), ix.search_vector(emb.embed([q])[0], 10)) for q in queries]


QUERIES = ["password reset", "Confidential Information", "greeter hello", "warranty liability",
           "zeppelinfreight parcels", "account locked email", "termination notice days"]  # fmt: skip


def test_edit_writes_one_segment_and_answers_like_a_rebuild(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    (corpus / "support" / "ship.md").write_text(
        "# Shipping\n\nParcels ship with the zeppelinfreight carrier.\n"
    )
    faq = corpus / "support" / "faq.md"
    faq.write_text(
        faq.read_text().replace("password", "passphrase", 1) + "\n\nWarranty claims go by email.\n"
    )
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert (rep.files_new, rep.files_changed, rep.files_unchanged) == (1, 1, 2)
    manifest = store.read_manifest(ix_dir / rep.generation)
    assert len(manifest["segments"]) == 2
    seg = ix_dir / "segments" / manifest["segments"][-1]
    assert json.loads((seg / "segment.json").read_text())["counts"]["files"] == 2  # only the edited files
    fresh = ingest_paths(tmp_path / "fresh", [corpus], cfg, progress=False)
    emb = cfg.embedder_factory()
    with Index.open(ix_dir, embedder=emb) as a, Index.open(tmp_path / "fresh", embedder=emb) as b:
        assert a.stats().chunks == b.stats().chunks == fresh.chunks_total and a.stats().segments == 2
        assert a.stats().deleted_chunks == rep.chunks_removed > 0
        for (ba, da), (bb, db) in zip(_results(a, emb, QUERIES), _results(b, emb, QUERIES), strict=True):
            assert _keys(a, ba) == _keys(b, bb)
            assert _keys(a, da) == _keys(b, db)
        assert a.stats().per_domain == b.stats().per_domain


def _ten_segments(tmp_path: Path, corpus: Path, cfg: IngestConfig) -> Path:
    ix_dir = tmp_path / "ix"
    cfg.max_segments = 20
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    for i in range(9):
        (corpus / "support" / f"note{i}.md").write_text(
            f"# Note {i}\n\nParcel {i} ships by zeppelinfreight.\n"
        )
        if i % 3 == 2:
            (corpus / "support" / f"note{i - 1}.md").write_text(
                f"# Note {i}\n\nWarranty note {i}, by email.\n"
            )
        ingest_paths(ix_dir, [corpus], cfg, progress=False)
    return ix_dir


def test_compaction_of_ten_segments_keeps_every_result(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = _ten_segments(tmp_path, corpus, cfg)
    emb = cfg.embedder_factory()
    queries = [*QUERIES, "parcel ships", "warranty note email", "note 4"]
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.stats().segments == 10 and ix.stats().deleted_chunks > 0
        before, stats = _results(ix, emb, queries), ix.stats()
    rep = compact_index(ix_dir)
    assert rep.changed and rep.compacted == 10
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.stats().segments == 1 and ix.stats().deleted_chunks == 0
        assert _results(ix, emb, queries) == before  # same ids, same scores
        assert (ix.stats().chunks, ix.stats().documents, ix.stats().files) == (
            stats.chunks,
            stats.documents,
            stats.files,
        )
    assert len(list((ix_dir / "segments").iterdir())) == 1, "merged segments are still on disk"
    assert not compact_index(ix_dir).changed
    # the next edit numbers its chunks after the merged segment's
    (corpus / "support" / "last.md").write_text("# Last\n\nOkapis are shy.\n")
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.get_chunks([ix.search_bm25("okapis", 1)[0][0]])[0].path.endswith("last.md")
        ids = ix.chunk_ids()
        assert len(np.unique(ids)) == len(ids) == ix.stats().chunks


def test_automatic_compaction_keeps_segments_bounded(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    cfg.max_segments = 3
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    emb = cfg.embedder_factory()
    compacted = 0
    for i in range(5):
        (corpus / "support" / f"n{i}.md").write_text(f"# N{i}\n\nTapir number {i} sleeps.\n")
        rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
        compacted += rep.compacted > 0
        with Index.open(ix_dir, embedder=emb) as ix:
            assert ix.stats().segments <= 3
            assert len(ix.search_bm25("tapir", 10)) == i + 1
    assert compacted >= 1


def test_remove_deletes_documents_from_every_store(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    first = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    emb = cfg.embedder_factory()
    cfg.max_deleted_fraction = 1.0  # keep the tombstones: what is checked is search over them
    live = store.current_generation(ix_dir)
    with pytest.raises(NotInIndexError, match="nowhere.md is not in the index"):
        remove_paths(ix_dir, [corpus / "legal" / "msa.txt", corpus / "nowhere.md"], cfg)
    assert store.current_generation(ix_dir) == live, "a failed remove changed the index"
    (corpus / "legal" / "msa.txt").unlink()  # gone from disk already: still removable
    rep = remove_paths(ix_dir, [corpus / "legal" / "msa.txt", corpus / "code"], cfg)
    assert rep.files_deleted == 2 and rep.chunks_removed > 0
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.stats().chunks == first.chunks_total - rep.chunks_removed == len(ix.chunk_ids())
        assert ix.stats().files == 1 and set(ix.stats().per_domain) == {"support"}
        assert ix.search_bm25("Confidential Information", 5) == [] and ix.search_bm25("Greeter", 5) == []
        paths = {
            c.path for c in ix.get_chunks([i for i, _ in ix.search_vector(emb.embed(["Greeter"])[0], 50)])
        }
        assert paths and all(p.endswith("faq.md") for p in paths)
    # ingesting the folder again brings back what is still on disk (the code file), not the deleted one
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert rep.files_new == 1
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.search_bm25("Greeter", 5) and ix.search_bm25("Confidential Information", 5) == []


def test_a_reader_keeps_its_segments_through_a_compaction(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = _ten_segments(tmp_path, corpus, cfg)
    emb = cfg.embedder_factory()
    reader = Index.open(ix_dir, embedder=emb)
    before = _results(reader, emb, QUERIES)
    compact_index(ix_dir)
    assert _results(reader, emb, QUERIES) == before
    reader.close()
    (corpus / "support" / "z.md").write_text("# Z\n\nZebras.\n")
    ingest_paths(ix_dir, [corpus], cfg, progress=False)  # its prune deletes what no generation names
    assert len(list((ix_dir / "segments").iterdir())) == 2


def test_a_deletion_only_update_writes_no_segment(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    first = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    cfg.max_deleted_fraction = 1.0
    (corpus / "code" / "tiny.py").unlink()
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert rep.changed and rep.files_deleted == 1 and rep.chunks_added == 0
    assert store.read_manifest(ix_dir / rep.generation)["segments"] == ["seg-000001"]
    assert sorted(p.name for p in (ix_dir / "segments").iterdir()) == ["seg-000001"]
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().chunks == first.chunks_total - rep.chunks_removed
        assert ix.search_bm25("Greeter", 3) == []


def test_tombstones_past_the_threshold_compact_automatically(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    ix_dir = tmp_path / "ix"
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    cfg.max_deleted_fraction = 0.1
    rep = remove_paths(ix_dir, [corpus / "legal"], cfg)
    assert rep.compacted == 1 and rep.chunks_removed > 0
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert (ix.stats().segments, ix.stats().deleted_chunks) == (1, 0)
        assert ix.search_bm25("Confidential Information", 5) == [] and ix.search_bm25("Greeter", 1)


def test_a_compaction_that_does_not_fit_is_skipped_not_the_update(
    tmp_path: Path, corpus: Path, cfg: IngestConfig, monkeypatch
):
    ix_dir = tmp_path / "ix"
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    cfg.max_deleted_fraction = 0.1
    (corpus / "legal" / "msa.txt").unlink()
    # room for the update (asked first), not for rewriting the segment (asked next)
    answers = iter([10**12])
    monkeypatch.setattr(store, "free_bytes", lambda d: next(answers, 10))
    rep = ingest_paths(ix_dir, [corpus], cfg, progress=False)
    assert rep.changed and rep.compacted == 0 and "needs about" in rep.disk["compaction_skipped"]
    with Index.open(ix_dir, embedder=cfg.embedder_factory()) as ix:
        assert ix.stats().deleted_chunks > 0 and ix.search_bm25("Confidential Information", 5) == []
    monkeypatch.undo()
    (corpus / "x.md").write_text("# X\n\nYaks.\n")
    assert ingest_paths(ix_dir, [corpus], cfg, progress=False).compacted >= 1


def test_term_counts_and_phrases_follow_the_live_chunks(tmp_path: Path, corpus: Path, cfg: IngestConfig):
    """What abstention reads (gdn2_rag.abstain): document frequencies, phrase mentions, the word list."""
    ix_dir = tmp_path / "ix"
    ingest_paths(ix_dir, [corpus], cfg, progress=False)
    (corpus / "support" / "more.md").write_text("The Greeter greets twice.\n")
    ingest_paths(ix_dir, [corpus], cfg, progress=False)  # a second segment
    emb = cfg.embedder_factory()
    with Index.open(ix_dir, embedder=emb) as ix:
        assert len(ix.segments) == 2
        df = ix.doc_freqs("Confidential Information of the Greeter, zorblax")
        assert df["confidential"] >= 1 and df["greeter"] >= 2 and df["zorblax"] == 0 and "the" not in df
        assert ix.mentions("confidential information") and not ix.mentions("Information Confidential")
        assert ix.mentions("Greeter greets") and not ix.mentions("Greeter zorblax")
        words = ix.dictionary_words()
        assert (
            words and "information" in words and "zorblax" not in words and not any("#" in w for w in words)
        )
    cfg.max_deleted_fraction = 1.0  # keep the tombstones: what is checked is reading past them
    remove_paths(ix_dir, [corpus / "legal" / "msa.txt"], cfg)
    with Index.open(ix_dir, embedder=emb) as ix:
        assert ix.doc_freqs("Confidential")["confidential"] == 0
        assert not ix.mentions("Confidential Information")
