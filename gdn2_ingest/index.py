"""`Index`: the read-only view of an index folder that gdn2_rag/ searches.

Opening reads CURRENT once and holds that generation (a shared flock on its manifest), so a
concurrent ingest that switches to a newer generation never changes what an open Index sees: the
generation and its segments stay on disk until every Index on it is closed, then the next writer
deletes them. Opening loads every segment with the generation's tombstones and checks it (file
sizes recorded in the manifests, FAISS / keyword / docstore counts agree): a damaged one is an
IndexBrokenError naming the file, not a crash at the first search.

Search fans out over the segments and merges (gdn2_ingest.dense, gdn2_ingest.sparse say why the
merge equals one index's answer): dense hits by (score, then chunk id), BM25 with the statistics of
all live chunks. Tombstoned chunks are never returned. An index whose manifest records a Qdrant
collection searches it instead of FAISS files, with one request filtered to this generation
(gdn2_ingest.dense_qdrant), and can apply a domain/path filter inside it. The query embedder is the
one recorded in the manifest unless one is passed; a different one is an EmbedderMismatchError.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from gdn2_ingest import dense_qdrant, store
from gdn2_ingest.embed import Embedder, SentenceTransformerEmbedder, dictionary_words
from gdn2_ingest.segments import SEGMENTS_DIR, Segment, Tombstones, broken, check_segment, check_sizes
from gdn2_ingest.types import Chunk, IndexStats
from gdn2_ingest.vectorstores.base import Where

# chunks a phrase's terms may share before `Index.mentions` takes it as mentioned without reading them
MENTION_CHECK_CHUNKS = 300


def open_segments(
    index_dir: Path, gen: Path, manifest: dict, use_gpu: bool | None = False, vstore=None
) -> tuple[list[Segment], Tombstones]:
    """The generation's segments, opened with its tombstones (docstores only; parts load lazily).
    use_gpu: where faiss-gpu is installed, None searches exact segments on the GPU (readers); writers
    and checks read vectors back and keep the CPU index. vstore: the index's Qdrant collection
    (gdn2_ingest.dense_qdrant) when its vectors live there."""
    check_sizes(gen, manifest.get("files") or {})
    tomb = Tombstones.load(gen)
    segs: list[Segment] = []
    try:
        for name in manifest.get("segments") or []:
            folder = index_dir / SEGMENTS_DIR / name
            if not folder.is_dir():
                raise broken(gen, f"../{SEGMENTS_DIR}/{name}", "is missing (a segment the manifest names)")
            segs.append(Segment(folder, tomb.dead_ids(name)))
            segs[-1].use_gpu = use_gpu
            segs[-1].vstore = vstore
            segs[-1].view = dense_qdrant.view_of(gen, manifest)
    except BaseException:
        for s in segs:
            s.close()
        raise
    return segs, tomb


def check_counts(gen: Path, manifest: dict, segs: list[Segment], tomb: Tombstones) -> None:
    live = sum(s.chunks for s in segs) - sum(tomb.n_dead(s.name) for s in segs)
    want = (manifest.get("counts") or {}).get("chunks")
    if want is not None and live != want:
        raise broken(gen, store.MANIFEST, f"counts {want} chunks, its segments hold {live} live ones")


def check_generation(
    gen: Path, manifest: dict | None = None, full: set[str] | None = None, vstore=None
) -> dict:
    """The check of a generation before a writer switches to it or reports it ready.

    Every segment's files have their recorded sizes and its docstore opens; the segments in `full`
    (None: all) are checked fully (gdn2_ingest.segments.check_segment: every part loads, the same
    chunk ids, probe searches). Segments are immutable, so a writer checks a segment fully once, when
    it is written, and the sizes ever after. `vstore`: the index's Qdrant collection, if it has one
    (None: opened here when the manifest names one). Raises IndexBrokenError naming the file; returns
    {"seconds": time taken}.
    """
    t0 = time.perf_counter()
    manifest = manifest if manifest is not None else store.read_manifest(gen)
    own = vstore is None and dense_qdrant.recorded(manifest).kind == dense_qdrant.KIND
    if own:
        vstore = dense_qdrant.connect(dense_qdrant.recorded(manifest), int(manifest["embedder"]["dim"]))
    try:
        segs, tomb = open_segments(gen.parent, gen, manifest, vstore=vstore)
    except BaseException:
        if own:
            vstore.close()
        raise
    try:
        check_counts(gen, manifest, segs, tomb)
        for s in segs:
            if full is None or s.name in full:
                check_segment(s)
    finally:
        for s in segs:
            s.close()
        if own:
            vstore.close()
    return {"seconds": time.perf_counter() - t0}


class Index:
    """Search and fetch over one index generation (a list of segments with tombstones)."""

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
        self.segments = []
        # the Qdrant collection of an index that keeps its vectors there (gdn2_ingest.dense_qdrant):
        # searched exactly up to dense_exact_max live chunks, as FAISS segments are
        self._store = None
        self._exact = True
        self._live_paths: list[str] | None = None
        self._dictionary: frozenset[str] | None = None
        try:
            store_cfg = dense_qdrant.recorded(manifest)
            if store_cfg.kind == dense_qdrant.KIND:
                self._exact = self.size() <= dense_qdrant.exact_max(manifest)
                self._store = dense_qdrant.connect(
                    store_cfg, int(manifest["embedder"]["dim"]), exact=self._exact
                )
                self._filter = dense_qdrant.SearchFilter(self._store, dense_qdrant.view_of(gen, manifest))
            self.segments, self.tombstones = open_segments(index_dir, gen, manifest, use_gpu=None,
                                                           vstore=self._store)  # fmt: skip
            for s in self.segments:
                s.load()
            check_counts(gen, manifest, self.segments, self.tombstones)
        except BaseException:
            self.close()
            raise
        from gdn2_ingest.sparse import KeywordSearch

        self._keyword = KeywordSearch([s.keyword for s in self.segments])
        # chunk id -> segment: the id ranges are disjoint and ascending (gdn2_ingest.segments)
        self._routed = [s for s in self.segments if s.chunks]
        self._lo = np.array([s.min_id for s in self._routed], dtype=np.int64)

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
        """Release the generation (a writer may delete it once no Index holds it)."""
        for s in getattr(self, "segments", []):
            s.close()
        self.segments = []
        if self._store is not None:
            self._store.close()
            self._store = None
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

    @property
    def filters_dense(self) -> bool:
        """Dense search applies a `Where` inside the store (Qdrant); FAISS segments ignore it and the
        caller filters the ranked hits afterwards."""
        return self._store is not None

    def search_dense(self, query: str, k: int = 10, where: Where | None = None) -> list[tuple[int, float]]:
        """(chunk id, cosine score), best first; `where` as in `search_vector`."""
        if not query.strip() or k <= 0 or not self.size():
            return []
        return self.search_vector(self.embed_query(query), k, where)

    def search_vector(
        self, qvec: np.ndarray, k: int = 10, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine score) of the `k` live chunks nearest to a query vector, best first.

        where: with `filters_dense`, only the chunks it admits are searched (pushed into Qdrant's
        filter); otherwise it is ignored (FAISS ranks every chunk)."""
        if self._store is not None:
            return dense_qdrant.search(self._store, qvec, k, self._filter.current(), where, self._exact)
        hits: list[tuple[int, float]] = []
        for s in self.segments:
            hits += s.dense.search(qvec, k)
        # equal scores by chunk id, so the number of segments never changes the order
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits[:k]

    def doc_freqs(self, text: str) -> dict[str, int]:
        """The keyword terms of `text` (the BM25 side's tokenization) -> how many live chunks hold each."""
        return self._keyword.doc_freqs(text)

    def mentions(self, phrase: str, max_chunks: int = MENTION_CHECK_CHUNKS) -> bool:
        """Whether some live chunk holds `phrase`: its words in order, apart only by spaces or punctuation
        (case-insensitive). The candidates are the chunks holding all its keyword terms; a phrase whose terms
        meet in more than `max_chunks` chunks counts as mentioned without reading them."""
        from gdn2_ingest.sparse import keyword_terms

        words = re.findall(r"\w+", phrase)
        terms = keyword_terms(phrase)
        if not words or not terms:
            return True
        ids = self._keyword.ids_with_all(terms)
        if len(ids) > max_chunks:
            return True
        pattern = re.compile(r"\b" + r"\W+".join(map(re.escape, words)) + r"\b", re.IGNORECASE)
        return any(pattern.search(c.text) for c in self.get_chunks(ids.tolist()))

    def dictionary_words(self) -> frozenset[str] | None:
        """The whole words of the query embedder's tokenizer vocabulary (lowercase, letters only): a general
        English word list that ships with the index's model (None when its tokenizer has no vocabulary)."""
        if self._dictionary is None:
            self._dictionary = dictionary_words(self.embedder.load_tokenizer())
        return self._dictionary if self._dictionary else None

    def search_bm25(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """(chunk id, BM25 score > 0), best first."""
        return self._keyword.search(query, k)

    def _route(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Segment position -> the live ids among `ids` it holds."""
        out: dict[int, np.ndarray] = {}
        if not len(self._lo) or not len(ids):
            return out
        where = np.searchsorted(self._lo, ids, side="right") - 1
        for j in np.unique(where[where >= 0]):
            seg = self._routed[j]
            mine = ids[(where == j) & (ids <= seg.info["max_id"])]
            if len(seg.dead_ids):
                mine = mine[~np.isin(mine, seg.dead_ids)]
            if len(mine):
                out[int(j)] = mine
        return out

    def get_chunks(self, ids: list[int]) -> list[Chunk]:
        """Chunks in the order of `ids` (unknown and deleted ids are left out)."""
        found: dict[int, Chunk] = {}
        for j, mine in self._route(np.asarray(list(ids), dtype=np.int64)).items():
            for c in self._routed[j].docstore.get_chunks([int(i) for i in mine]):
                found[c.id] = c
        return [found[int(i)] for i in ids if int(i) in found]

    def neighbours(self, chunk_id: int, before: int = 1, after: int = 1) -> list[Chunk]:
        """The chunk and up to `before`/`after` chunks around it in its document, in order (a document
        lives in one segment and is deleted whole)."""
        routed = self._route(np.array([int(chunk_id)], dtype=np.int64))
        if not routed:
            return []
        (j,) = routed
        return self._routed[j].docstore.neighbours(chunk_id, before, after)

    def live_paths(self) -> list[str]:
        """Every live (indexed, not deleted, not skipped) file path, sorted; computed once per view."""
        if self._live_paths is None:
            out: set[str] = set()
            for s in self.segments:
                dead = set(self.tombstones.dead_paths(s.name))
                out |= {p for p, v in s.docstore.files().items() if v[3] is None and p not in dead}
            self._live_paths = sorted(out)
        return self._live_paths

    def chunk_ids(self) -> np.ndarray:
        """Every live chunk id, ascending."""
        parts = []
        for s in self._routed:
            ids = np.asarray(s.keyword.p.ids)
            parts.append(ids[s.keyword.live])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def vectors(self, ids) -> np.ndarray:
        """float32 vectors of live chunk ids (each must be live), in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), int(self.manifest["embedder"]["dim"])), dtype=np.float32)
        for j, mine in self._route(ids).items():
            vecs = self._routed[j].dense.vectors(mine)
            pos = {int(i): r for r, i in enumerate(mine)}
            for r, i in enumerate(ids):
                if int(i) in pos:
                    out[r] = vecs[pos[int(i)]]
        return out

    def size(self) -> int:
        """Live chunks."""
        return int((self.manifest.get("counts") or {}).get("chunks", 0))

    def stats(self) -> IndexStats:
        c = self.manifest["counts"]
        size = store.tree_bytes(self.generation) + sum(store.tree_bytes(s.folder) for s in self.segments)
        return IndexStats(
            documents=c["documents"],
            files=c["files"],
            chunks=c["chunks"],
            per_domain={k: v for k, v in c["per_domain"].items() if v},
            embedder=self.manifest["embedder"]["name"],
            dims=int(self.manifest["embedder"]["dim"]),
            bytes=size,
            generation=self.generation.name,
            dense_kind=self.manifest["dense"]["kind"],
            format_version=int(self.manifest["format_version"]),
            segments=len(self.segments),
            deleted_chunks=self.tombstones.n_dead(),
            vector_store=dense_qdrant.recorded(self.manifest).describe(),
        )
