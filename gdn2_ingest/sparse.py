"""BM25 keyword index (bm25s) over each chunk's title, section and text, for hybrid retrieval.

Rebuilt from the docstore with every generation, so deleted and changed text leaves the keyword
index in the same step as it leaves the dense index. Positions map to chunk ids through ids.npy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STOPWORDS = "en"


def _tok(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=False)


def build_bm25(rows: list[tuple[int, str, str, str]], out_dir: Path) -> None:
    """rows: (chunk id, title, section, text). Writes the bm25s files and ids.npy into out_dir."""
    import bm25s

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    np.save(out_dir / "ids.npy", ids)
    if not rows:
        return
    corpus = [f"{t}\n{s}\n{x}" for _, t, s, x in rows]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords=STOPWORDS, show_progress=False), show_progress=False)
    retriever.save(str(out_dir), show_progress=False)


class BM25Index:
    """Loaded keyword index; `search` returns (chunk id, score) best first, only positive scores."""

    def __init__(self, directory: Path) -> None:
        import bm25s

        self.ids = np.load(directory / "ids.npy")
        self.retriever = bm25s.BM25.load(str(directory), show_progress=False) if len(self.ids) else None

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        if self.retriever is None or k <= 0:
            return []
        toks = [t for t in _tok([query])[0] if t in self.retriever.vocab_dict]
        if not toks:
            return []
        # n_threads=0: scored in this thread (any other value starts a thread pool per call, 3.5 ms of
        # a 10 ms search; bench/results/serve.md)
        docs, scores = self.retriever.retrieve(
            [toks], k=min(k, len(self.ids)), show_progress=False, n_threads=0
        )
        return [(int(self.ids[d]), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
