"""`Index`: the read-only view of an index folder that gdn2_rag/ searches.

Opening reads CURRENT once and holds that generation's files (and a shared flock on its manifest),
so a concurrent ingest that switches to a newer generation never changes what an open Index sees: the
previous generation is kept on disk until every Index on it is closed, then the next ingest deletes it.
Opening checks the generation (file sizes recorded in the manifest, FAISS / BM25 / manifest counts
agree): a damaged one is an IndexBrokenError naming the file, not a crash at the first search.
`check_generation` is the full check an ingest runs before it switches to a generation.
The query embedder is the one recorded in the manifest unless one is passed; a different one is an
EmbedderMismatchError, since its vectors would not be comparable.
"""

from __future__ import annotations

import os
from pathlib import Path

from gdn2_ingest import store
from gdn2_ingest.docstore import DocStore
from gdn2_ingest.embed import Embedder, SentenceTransformerEmbedder
from gdn2_ingest.errors import IndexBrokenError
from gdn2_ingest.types import Chunk, IndexStats


def _broken(gen: Path, what: str, why: str | BaseException) -> IndexBrokenError:
    why = " ".join(str(why).split())
    if len(why) > 160:
        why = why[:157] + "..."
    return IndexBrokenError(
        f"index generation {gen.name} in {gen.parent} is broken: {gen / what} {why};"
        " restore it or re-ingest into a new --index folder"
    )


def check_sizes(gen: Path, manifest: dict) -> None:
    """Every file the manifest lists exists with its recorded size (cheap; older manifests list none)."""
    for rel, size in (manifest.get("files") or {}).items():
        try:
            actual = (gen / rel).stat().st_size
        except OSError:
            raise _broken(gen, rel, "is missing") from None
        if actual != size:
            raise _broken(
                gen, rel, f"has {actual} bytes, the manifest recorded {size} (truncated or overwritten)"
            )


def load_dense_checked(gen: Path, use_gpu: bool | None = None):
    from gdn2_ingest.dense import load_dense

    try:
        return load_dense(gen / store.DENSE, use_gpu=use_gpu)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError for any unreadable file
        # faiss's message is a C++ assertion with source paths: keep its gist
        raise _broken(gen, store.DENSE, "cannot be read by faiss (truncated or corrupted)") from exc


def load_bm25_checked(gen: Path):
    from gdn2_ingest.sparse import BM25Index

    try:
        return BM25Index(gen / store.BM25_DIR)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy/json/bm25s errors on a damaged file
        raise _broken(gen, store.BM25_DIR, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def check_counts(gen: Path, manifest: dict, dense, bm25, chunks: int | None = None) -> None:
    """FAISS, BM25, the manifest (and the docstore's count when given) agree on the number of chunks."""
    want = (manifest.get("counts") or {}).get("chunks", chunks)
    if chunks is not None and want != chunks:
        raise _broken(gen, store.DOCSTORE, f"holds {chunks} chunks, the manifest says {want}")
    if want is None:
        return
    if dense.ntotal != want:
        raise _broken(gen, store.DENSE, f"holds {dense.ntotal} vectors, the docstore {want} chunks")
    if len(bm25.ids) != want:
        raise _broken(gen, store.BM25_DIR, f"holds {len(bm25.ids)} chunks, the docstore {want}")


def check_generation(gen: Path, manifest: dict | None = None) -> dict:
    """The full check of a generation, run before an ingest switches to it or calls it ready.

    File sizes match the manifest; FAISS, BM25 and the docstore load, hold the same chunk ids; a probe
    search of each returns. Raises IndexBrokenError naming the file; returns {"dense": the loaded CPU
    FAISS index, "seconds": time taken} so a caller can reuse the index.
    """
    import time

    import numpy as np

    from gdn2_ingest.dense import search_dense_index

    t0 = time.perf_counter()
    manifest = manifest if manifest is not None else store.read_manifest(gen)
    check_sizes(gen, manifest)
    dense = load_dense_checked(gen, use_gpu=False)
    bm25 = load_bm25_checked(gen)
    try:
        db = DocStore(gen / store.DOCSTORE, readonly=True)
        try:
            ids, _ = db.ids_and_hashes()
            texts = db.get_chunks([int(i) for i in ids[:5]])
        finally:
            db.close()
    except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError: "file is not a database", ...
        raise _broken(gen, store.DOCSTORE, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    check_counts(gen, manifest, dense, bm25, len(ids))
    if not np.array_equal(np.sort(np.asarray(bm25.ids)), ids):
        raise _broken(gen, store.BM25_DIR, "holds other chunk ids than the docstore")
    if len(ids):
        try:
            import faiss

            stored = np.sort(faiss.vector_to_array(dense.id_map)) if hasattr(dense, "id_map") else None
        except Exception:  # noqa: BLE001 - an index without an id map is checked by the probe alone
            stored = None
        if stored is not None and not np.array_equal(stored, ids):
            raise _broken(gen, store.DENSE, "holds other chunk ids than the docstore")
        from gdn2_ingest.dense import vectors_for

        try:
            probe = vectors_for(dense, ids[:1])[0]
            hits = search_dense_index(dense, probe, 1)
        except Exception as exc:  # noqa: BLE001
            raise _broken(gen, store.DENSE, f"fails a probe search ({exc})") from exc
        if not hits or hits[0][1] < 0.9 * float(np.dot(probe, probe)):
            raise _broken(gen, store.DENSE, "fails a probe search (a stored vector does not find itself)")
        if len(texts) != min(5, len(ids)):
            raise _broken(gen, store.DOCSTORE, "misses chunks it lists")
        for c in texts:
            if bm25.retriever is None:
                raise _broken(gen, store.BM25_DIR, "is empty while the docstore holds chunks")
            try:
                from gdn2_ingest.sparse import _tok

                words = [t for t in _tok([c.text])[0] if t in bm25.retriever.vocab_dict]
                if not words:
                    continue  # only stop words: try the next chunk
                if not bm25.search(" ".join(words[:8]), 1):
                    raise _broken(gen, store.BM25_DIR, "fails a probe search (a chunk's words find nothing)")
            except IndexBrokenError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _broken(gen, store.BM25_DIR, f"fails a probe search ({exc})") from exc
            break
    return {"dense": dense, "seconds": time.perf_counter() - t0}


class Index:
    """Search and fetch over one index generation."""

    def __init__(
        self, index_dir: Path, gen: Path, manifest: dict, embedder: Embedder | None,
        device: str | None = None, dtype: str = "auto", hold=None,
    ) -> None:  # fmt: skip
        self.index_dir = index_dir
        self.generation = gen
        self.manifest = manifest
        self._embedder = embedder
        self._device, self._dtype = device, dtype
        self._hold = hold
        check_sizes(gen, manifest)
        try:
            self.docstore = DocStore(gen / store.DOCSTORE, readonly=True)
            chunks = self.docstore.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors on a damaged file
            raise _broken(gen, store.DOCSTORE, f"cannot be read ({type(exc).__name__}: {exc})") from exc
        self.dense = load_dense_checked(gen)
        self.bm25 = load_bm25_checked(gen)
        check_counts(gen, manifest, self.dense, self.bm25, chunks)

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
        gen, hold = store.hold_generation(index_dir)
        try:
            manifest = store.read_manifest(gen)
            if embedder is not None:
                store.check_embedder(index_dir, manifest, embedder.identity())
            return cls(index_dir, gen, manifest, embedder, device, dtype, hold=hold)
        except BaseException:
            hold.close()
            raise

    def close(self) -> None:
        """Release the generation (an ingest may delete it once no Index holds it)."""
        if getattr(self, "docstore", None) is not None:
            self.docstore.close()
        if self._hold is not None:
            self._hold.close()
            self._hold = None

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
