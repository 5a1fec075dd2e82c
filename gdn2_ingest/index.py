"""`Index`: the read-only view of an index folder that gdn2_rag/ searches.

Opening reads CURRENT once and holds that generation's files, so a concurrent ingest that switches
to a newer generation never changes what an open Index sees (the previous generation is kept).
The query embedder is the one recorded in the manifest unless one is passed; a different one is an
EmbedderMismatchError, since its vectors would not be comparable.
"""

from __future__ import annotations

import os
from pathlib import Path

from gdn2_ingest import store
from gdn2_ingest.docstore import DocStore
from gdn2_ingest.embed import Embedder, SentenceTransformerEmbedder
from gdn2_ingest.types import Chunk, IndexStats


class Index:
    """Search and fetch over one index generation."""

    def __init__(
        self, index_dir: Path, gen: Path, manifest: dict, embedder: Embedder | None,
        device: str | None = None, dtype: str = "auto",
    ) -> None:  # fmt: skip
        from gdn2_ingest.dense import load_dense
        from gdn2_ingest.sparse import BM25Index

        self.index_dir = index_dir
        self.generation = gen
        self.manifest = manifest
        self._embedder = embedder
        self._device, self._dtype = device, dtype
        self.docstore = DocStore(gen / store.DOCSTORE, readonly=True)
        self.dense = load_dense(gen / store.DENSE)
        self.bm25 = BM25Index(gen / store.BM25_DIR)

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike,
        embedder: Embedder | None = None,
        device: str | None = None,
        dtype: str = "auto",
    ) -> Index:
        """Open the live generation; IndexNotFoundError when there is none.

        Args:
            embedder: query embedder; None loads the manifest's model lazily at the first dense search.
            device: device for that model ("cpu" | "cuda" | None = auto).
            dtype: its weights' dtype ("auto" | "float32" | "bfloat16" | "float16").
        """
        index_dir = Path(index_dir).expanduser().absolute()
        gen = store.require_generation(index_dir)
        manifest = store.read_manifest(gen)
        if embedder is not None:
            store.check_embedder(index_dir, manifest, embedder.identity())
        return cls(index_dir, gen, manifest, embedder, device, dtype)

    def close(self) -> None:
        self.docstore.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            ident = self.manifest["embedder"]
            emb = SentenceTransformerEmbedder(ident.get("path"), device=self._device, dtype=self._dtype)
            store.check_embedder(self.index_dir, self.manifest, emb.identity())
            self._embedder = emb
        return self._embedder

    def embed_query(self, query: str):
        return self.embedder.embed([query])[0]

    def search_dense(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """(chunk id, cosine score), best first."""
        from gdn2_ingest.dense import search_dense_index

        if not query.strip() or k <= 0 or self.dense.ntotal == 0:
            return []
        return search_dense_index(self.dense, self.embed_query(query), k)

    def search_bm25(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """(chunk id, BM25 score > 0), best first."""
        return self.bm25.search(query, k)

    def get_chunks(self, ids: list[int]) -> list[Chunk]:
        """Chunks in the order of `ids` (unknown ids are left out)."""
        return self.docstore.get_chunks(list(ids))

    def neighbours(self, chunk_id: int, before: int = 1, after: int = 1) -> list[Chunk]:
        """The chunk and up to `before`/`after` chunks around it in its document, in order."""
        return self.docstore.neighbours(chunk_id, before, after)

    def stats(self) -> IndexStats:
        files, docs, chunks, per = self.docstore.counts()
        size = sum(f.stat().st_size for f in self.generation.rglob("*") if f.is_file())
        return IndexStats(
            documents=docs,
            files=files,
            chunks=chunks,
            per_domain=per,
            embedder=self.manifest["embedder"]["name"],
            dims=int(self.manifest["embedder"]["dim"]),
            bytes=size,
            generation=self.generation.name,
            dense_kind=self.manifest["dense"]["kind"],
            format_version=int(self.manifest["format_version"]),
        )
