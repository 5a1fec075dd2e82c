"""Fusion, filters and near-duplicate dropping (gdn2_rag/fusion.py, filters.py, dedup.py, retrieve.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gdn2_rag import RAGConfig
from gdn2_rag.dedup import drop_near_duplicates
from gdn2_rag.errors import RagError
from gdn2_rag.filters import MetadataFilter
from gdn2_rag.fusion import fuse_reader_spans, piece_ranks, reciprocal_rank_fusion
from gdn2_rag.retrieve import HybridRetriever


def test_rrf_sums_weighted_reciprocal_ranks():
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    bm25 = [(3, 12.0), (1, 4.0)]
    fused = dict(reciprocal_rank_fusion([dense, bm25], [1.0, 2.0], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 2 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 2 / 61)
    order = [i for i, _ in reciprocal_rank_fusion([dense, bm25], [1.0, 2.0], k=60)]
    assert order == [3, 1, 2]


def test_rrf_weight_zero_ignores_a_list_and_duplicates_count_once():
    fused = reciprocal_rank_fusion([[(1, 1.0), (1, 0.5), (2, 0.1)], [(9, 1.0)]], [1.0, 0.0])
    assert [i for i, _ in fused] == [1, 2]
    assert dict(fused)[2] == pytest.approx(1 / 62)


def test_rrf_ties_are_stable_and_bad_args_raise():
    fused = reciprocal_rank_fusion([[(5, 1.0)], [(4, 1.0)]])
    assert [i for i, _ in fused] == [4, 5]
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([[(1, 1.0)]], [1.0, 1.0])
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([[(1, 1.0)]], k=0)


def test_reader_spans_lean_to_better_ranked_passages_unless_the_reader_is_sure():
    Span = SimpleNamespace
    ranks = piece_ranks([0.01, 0.03, 0.02, 0.03])
    assert ranks == [3, 0, 2, 1]  # ties keep piece order
    unsure = [Span(score=0.4, piece_index=0), Span(score=0.2, piece_index=1)]
    assert fuse_reader_spans(unsure, ranks, 0.0).piece_index == 0  # the reader alone
    assert fuse_reader_spans(unsure, ranks, 3.0).piece_index == 1  # 0.4 / 4**3 < 0.2
    sure = [Span(score=0.95, piece_index=0), Span(score=0.01, piece_index=1)]
    assert fuse_reader_spans(sure, ranks, 3.0).piece_index == 0  # 0.95 / 64 > 0.01
    with pytest.raises(ValueError):
        fuse_reader_spans([], ranks, 3.0)


def test_filter_domain_and_glob():
    c = SimpleNamespace(domain="code", path="/repo/src/pkg/mod.py")
    assert MetadataFilter(domain="code").matches(c)
    assert not MetadataFilter(domain="legal").matches(c)
    assert MetadataFilter(path_glob="*.py").matches(c)
    assert MetadataFilter(path_glob="/repo/src/*").matches(c)
    assert not MetadataFilter(path_glob="/other/*").matches(c)
    assert not MetadataFilter(domain="code", path_glob="*.md").matches(c)
    with pytest.raises(ValueError, match="unknown domain"):
        MetadataFilter(domain="finance")


def test_relative_glob_with_a_slash_matches_the_tail_of_an_absolute_path():
    # the index stores absolute paths; users type globs relative to where they ingested
    c = SimpleNamespace(domain="code", path="/repo/src/pkg/mod.py")
    assert MetadataFilter(path_glob="pkg/*.py").matches(c)
    assert MetadataFilter(path_glob="./src/pkg/mod.py").matches(c)
    assert not MetadataFilter(path_glob="lib/*.py").matches(c)
    assert not MetadataFilter(path_glob="/pkg/*.py").matches(c)


def _c(i, text, digest=None):
    return SimpleNamespace(id=i, text=text, content_hash=digest or f"h{i}")


def test_dedup_drops_exact_and_near_copies_keeps_the_better_ranked():
    base = "the licensee may copy and distribute verbatim copies of the program source code as received " * 3
    chunks = [
        _c(1, base),
        _c(2, base, digest="h1"),  # exact copy by hash
        _c(3, base + " extra"),  # near copy
        _c(4, "completely different text about refund windows and password resets in the help centre"),
    ]
    kept, dropped = drop_near_duplicates(chunks, threshold=0.8)
    assert [c.id for c in kept] == [1, 4]
    assert [c.id for c in dropped] == [2, 3]
    kept, _ = drop_near_duplicates(chunks, threshold=1.0)
    assert [c.id for c in kept] == [1, 3, 4]


def test_config_validates():
    with pytest.raises(ValueError, match="fusion weights"):
        RAGConfig(dense_weight=0, bm25_weight=0)
    with pytest.raises(ValueError, match="device"):
        RAGConfig(device="tpu")
    assert RAGConfig().with_(device=None, top_k=3).top_k == 3


def test_hybrid_retriever_fuses_filters_and_scores(fake_index):
    r = HybridRetriever(fake_index, RAGConfig())
    got = r.retrieve("reset link expires", k=3)
    assert got.passages[0].path.endswith("password.md")
    assert [p.rank for p in got.passages] == list(range(1, len(got.passages) + 1))
    assert all(p.score > 0 for p in got.passages)
    assert got.passages[0].bm25_score is not None and got.passages[0].dense_score is not None
    only_code = r.retrieve("reset link expires attempts", k=5, flt=MetadataFilter(domain="code"))
    assert only_code.passages and all(p.domain == "code" for p in only_code.passages)
    assert all(
        p.path.endswith(".py") for p in r.retrieve("the", k=5, flt=MetadataFilter(path_glob="*.py")).passages
    )


def test_weights_change_the_ranking(fake_index):
    bm25_only = HybridRetriever(fake_index, RAGConfig(dense_weight=0.0)).retrieve("notice", k=2)
    assert fake_index.calls["dense"] == 0 and fake_index.calls["bm25"] == 1
    assert all(p.dense_score is None for p in bm25_only.passages)


def test_empty_query_is_a_user_error(fake_index):
    with pytest.raises(RagError, match="empty"):
        HybridRetriever(fake_index).retrieve("   ")


class _RankedIndex:
    """200 chunks ranked 0..199 by both retrievers; only the lowest-ranked one is code."""

    def __init__(self, size: int = 200) -> None:
        self.size = size
        self.searches: list[int] = []

    def _hits(self, k):
        self.searches.append(k)
        return [(i, 1.0 - i / self.size) for i in range(min(k, self.size))]

    def search_dense(self, query, k):
        return self._hits(k)

    def search_bm25(self, query, k):
        return self._hits(k)

    def get_chunks(self, ids):
        return [
            SimpleNamespace(
                id=i,
                path=f"/docs/{i}.py" if i == self.size - 1 else f"/docs/{i}.md",
                domain="code" if i == self.size - 1 else "legal",
                text=f"chunk number {i} " + "word " * (i % 7),
                line_start=1,
                line_end=2,
                section="",
                title="",
                page=None,
            )
            for i in ids
        ]


def test_a_narrow_filter_widens_the_search_until_a_match_is_found():
    index = _RankedIndex()
    retriever = HybridRetriever(index, RAGConfig(candidates=4, retrieval_threads=None))
    got = retriever.retrieve("anything", k=1, flt=MetadataFilter(domain="code"))
    assert [p.chunk_id for p in got.passages] == [199]
    # the first round (4 x over-fetch = 20 hits) held no code chunk; later rounds widened
    assert index.searches[0] == 20 and max(index.searches) >= 200


def test_a_filter_nothing_matches_stops_when_the_index_is_exhausted():
    index = _RankedIndex()
    retriever = HybridRetriever(index, RAGConfig(candidates=4, retrieval_threads=None))
    assert retriever.retrieve("anything", k=3, flt=MetadataFilter(domain="support")).passages == []
    assert len(index.searches) <= 2 * 4
