"""A synthetic corpus and a random-but-fixed embedder for index benchmarks (no model, no GPU).

`write_corpus` writes `files` Markdown files of `paragraphs` paragraphs each, words drawn from a
Zipf-distributed vocabulary (so BM25 sees realistic document frequencies); one paragraph is one chunk
at the chunk size the benches use. `RandomEmbedder` maps each text to a unit vector seeded by its
hash: the same text always gets the same vector, so a rebuild and an incremental update agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

VOCAB = 50_000


def _words(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.15, size=n), VOCAB)
    return [f"w{r}" for r in ranks]


def paragraph(rng: np.random.Generator, words: int = 40) -> str:
    return " ".join(_words(rng, words)) + "."


def write_corpus(root: Path, files: int, paragraphs: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(files):
        p = root / f"d{f // 100:03d}" / f"doc{f:05d}.md"
        p.parent.mkdir(exist_ok=True)
        p.write_text(f"# Document {f}\n\n" + "\n\n".join(paragraph(rng) for _ in range(paragraphs)) + "\n")
        out.append(p)
    return out


def queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(_words(rng, int(rng.integers(2, 6)))) for _ in range(n)]


class RandomEmbedder:
    """Unit vectors seeded by the text's hash; counts tokens with the real MiniLM tokenizer."""

    def __init__(self, dim: int = 384) -> None:
        from gdn2_ingest.embed import SentenceTransformerEmbedder

        self.dim = dim
        self.max_tokens = 256
        self._tok = SentenceTransformerEmbedder().load_tokenizer()
        self.texts = 0

    def identity(self) -> dict:
        return {
            "name": "random",
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "fingerprint": f"random-{self.dim}",
        }

    def load_tokenizer(self):
        return self._tok

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
