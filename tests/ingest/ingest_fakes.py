"""A deterministic, fast stand-in for the sentence-transformers embedder (CPU tests).

It counts tokens with the real all-MiniLM-L6-v2 tokenizer (so chunk sizes are the real ones) and
embeds a text as the L2-normalised hashed bag of its word pieces, so texts sharing words are close
and dense search is meaningful. `delay` slows each batch (for the killed-mid-embedding test) and
`marker` is a file created when the first batch starts.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from gdn2_ingest.embed import SentenceTransformerEmbedder


class HashEmbedder:
    def __init__(
        self, dim: int = 256, delay: float = 0.0, marker: str | None = None, name: str = "hash"
    ) -> None:
        self.dim = dim
        self.max_tokens = 256
        self.delay = delay
        self.marker = marker
        self.name = name
        self._tok = SentenceTransformerEmbedder().load_tokenizer()
        self.calls = 0

    def identity(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "fingerprint": f"{self.name}-{self.dim}",
        }

    def load_tokenizer(self):
        return SentenceTransformerEmbedder().load_tokenizer()

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.marker:
            Path(self.marker).touch()
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(self._tok.encode_batch(texts, add_special_tokens=False)):
            for t in enc.tokens:
                h = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)
