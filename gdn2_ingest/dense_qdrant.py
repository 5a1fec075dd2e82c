"""The dense part of an index kept in a Qdrant collection (VectorStoreConfig kind "qdrant") instead of
a FAISS file per segment; docstore, keyword postings, tombstones and generations stay in the folder.

One point per chunk: point id = chunk id, the vector rounded to float16 (as a FAISS segment stores it,
so scores and rankings are a FAISS index's), payload chunk_id, segment (the one that wrote it), domain,
path, paths (the path and its folders) and, once the chunk is tombstoned, dead_from.

Generations keep their meaning (gdn2_ingest.store): a generation G whose next chunk id is N sees

    chunk_id < N  and not  dead_from <= G

and no writer changes that before it switches CURRENT away from G:
  - the points of a new segment have ids >= N (ids only grow);
  - the chunks a new generation G' tombstones are marked dead_from = G' > G;
  - a compaction deletes the points of the chunks it drops, which G already sees as dead.
So a writer killed at any point leaves G's results as they were. What it left (points with ids >= N,
marks > G) is removed by the next writer before it writes anything (`forget_after`, under the index
lock). Tombstoned chunks keep their (marked) points until a compaction drops them, as their text stays
on disk until then. Chunk ids below N that no live segment holds are exactly the chunks compactions
dropped, whose points are gone, so "chunk_id < N" is "in a live segment"; a segment's points are the
ones in its [min_id, max_id].

A reader that holds an older generation across a compaction (an open `Index` while another process
compacts) no longer finds the dropped chunks' points: a FAISS index keeps that generation's files
until the reader closes it, a shared collection cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from gdn2_ingest.config import IngestConfig, VectorStoreConfig
from gdn2_ingest.errors import VectorStoreError
from gdn2_ingest.vectorstores.base import Where
from gdn2_ingest.vectorstores.qdrant import GenerationView, QdrantStore

KIND = "qdrant"
# extra hits asked for, so that chunks tied with the k-th (the same text in several files) are ranked
# by chunk id as FAISS ranks them, not in Qdrant's order
TIE_MARGIN = 8


def generation_number(gen: Path | str | None) -> int:
    """gen-000007 -> 7; no generation -> 0."""
    if gen is None:
        return 0
    return int(Path(gen).name[4:10])


def view_of(gen: Path | None, manifest: dict | None) -> GenerationView:
    """What generation `gen` (with `manifest`) sees of the collection."""
    next_id = int(((manifest or {}).get("next_ids") or {}).get("chunk", 1))
    return GenerationView(next_id=next_id, generation=generation_number(gen))


def exact_max(manifest: dict) -> int:
    """The dense_exact_max an index was built with (its manifest owns it once it exists): up to this
    many chunks dense search is exact, FAISS segments and Qdrant alike."""
    return int((manifest.get("dense") or {}).get("exact_max", IngestConfig.dense_exact_max))


def recorded(manifest: dict | None) -> VectorStoreConfig:
    """The store a manifest records (FAISS when it records none)."""
    return VectorStoreConfig.from_record((manifest or {}).get("vector_store"))


def resolve(index_dir: Path, manifest: dict | None, requested: VectorStoreConfig | None) -> VectorStoreConfig:
    """The store a writer uses: the one the index records, or `requested` for a new index.

    Raises VectorStoreError when `requested` names another store than the recorded one (the
    manifest owns the choice; an index does not move its vectors)."""
    if manifest is None:
        return (requested or VectorStoreConfig()).validate().resolved(index_dir)
    have = recorded(manifest)
    if requested is None:
        return have
    want = requested.resolved(index_dir)
    if want.kind != have.kind:
        differ = ["store"]
    else:
        differ = [name for name, a, b in (("url", want.url, have.url), ("path", want.path, have.path),
                                          ("collection", requested.collection, have.collection),
                                          ("api key file", want.api_key_file, have.api_key_file))
                  if a != b and (a is not None or name in ("url", "path"))]  # fmt: skip
    if differ:
        raise VectorStoreError(
            f"index {index_dir} keeps its vectors in {have.describe()}, not {want.describe()}"
            f" ({', '.join(differ)} differ{'s' if len(differ) == 1 else ''}); an index does not switch"
            " stores: leave out the store flags to use its own, or ingest into a new --index folder"
        )
    return have


def own_folders(index_dir: Path, requested: VectorStoreConfig | None) -> list[Path]:
    """The embedded Qdrant folder an ingest into `index_dir` uses (requested, or recorded), so that
    ingesting a folder that holds it does not index Qdrant's own files; [] for none."""
    from gdn2_ingest import store

    cfg = requested
    if cfg is None:
        try:
            gen = store.current_generation(index_dir)
            cfg = recorded(store.read_manifest(gen)) if gen is not None else None
        except Exception:  # noqa: BLE001 - a damaged index is reported under the lock, with its reason
            cfg = None
    return [Path(cfg.path).expanduser().absolute()] if cfg is not None and cfg.path else []


def connect(cfg: VectorStoreConfig, dim: int, exact: bool = True, create: bool = False) -> QdrantStore:
    """A client of the index's collection. `create`: make a missing collection (a new index)."""
    api_key = None
    if cfg.api_key_file is not None:
        try:
            api_key = Path(cfg.api_key_file).read_text().strip()
        except OSError as exc:
            raise VectorStoreError(
                f"cannot read the Qdrant API key file {cfg.api_key_file}: {exc.strerror or exc}"
            ) from exc
    try:
        return QdrantStore(
            dim, collection=cfg.collection, url=cfg.url, location=cfg.path or ":memory:", exact=exact,
            api_key=api_key, create=create, float16=True,
        )  # fmt: skip
    except ValueError as exc:  # a collection of another width
        raise VectorStoreError(f"{exc}; the index's embedder makes {dim}-dim vectors") from exc


def create_for_new_index(cfg: VectorStoreConfig, dim: int) -> QdrantStore:
    """The collection of a new index: created, or adopted when it exists and is empty. One that holds
    points belongs to another index (a killed first ingest of this one left none: the first ingest
    records the store in an empty generation before it writes any point)."""
    store = connect(cfg, dim, create=True)
    n = store.count()
    if n:
        store.close()
        raise VectorStoreError(
            f"Qdrant collection {cfg.collection} ({store.where}) already holds {n} points of another"
            " index; give this index its own with --qdrant-collection NAME"
        )
    return store


@contextmanager
def writer_store(cfg: VectorStoreConfig, gen: Path | None, manifest: dict | None,
                 dim: int) -> Iterator[QdrantStore | None]:  # fmt: skip
    """The collection a writer (under the index lock) works on, None for a FAISS index. `cfg`: the
    index's store (`resolve`); `gen`, `manifest`: its live generation (None: a new index, whose
    collection `create_for_new_index` makes). What a killed writer left in the collection is removed
    first, so the new generation starts from the live one's points."""
    if cfg.kind != KIND:
        yield None
        return
    store = connect(cfg, dim) if manifest is not None else create_for_new_index(cfg, dim)
    try:
        if manifest is not None:
            store.forget_after(view_of(gen, manifest))
        yield store
    finally:
        store.close()


def mark_dead(store: QdrantStore | None, before: set[int], after: set[int], generation: int) -> None:
    """Mark the chunks `after` tombstones and `before` did not as dead from `generation` on."""
    if store is not None:
        new = np.array(sorted(after - before), dtype=np.int64)
        if len(new):
            store.mark_dead(new, generation)


def f16(vecs: np.ndarray) -> np.ndarray:
    """The vectors as a FAISS segment stores them (float16), back in float32."""
    return np.asarray(vecs, dtype=np.float32).astype(np.float16).astype(np.float32)


def write_points(store: QdrantStore, segment: str, ids: np.ndarray, vecs: np.ndarray, domains: list[str],
                 paths: list[str]) -> None:  # fmt: skip
    """Upsert a new segment's points (ids above the live generation's: it does not see them yet)."""
    from gdn2_ingest.scan import display_path

    # Qdrant's payload is JSON: an undecodable file name goes in its display form (a filter on it is a
    # pre-selection; retrieval still checks every chunk's real path)
    store.add(ids, f16(vecs), domains, [display_path(p) for p in paths], extra={"segment": segment})


def search(store: QdrantStore, qvec: np.ndarray, k: int, view: GenerationView | None, where: Where | None,
           exact: bool) -> list[tuple[int, float]]:  # fmt: skip
    """(chunk id, cosine) of the k best chunks `view` sees (None: every point, see `SearchFilter`)
    that `where` admits; equal scores by chunk id, as FAISS segments merge them."""
    if where is not None:
        from gdn2_ingest.scan import display_path

        # the payload holds display forms (`write_points`)
        where = replace(
            where,
            path=None if where.path is None else display_path(where.path),
            any_paths=None if where.any_paths is None else tuple(display_path(p) for p in where.any_paths),
        )
    hits = store.search(qvec, k + TIE_MARGIN, where=where, view=view, exact=exact)[0]
    return sorted(hits, key=lambda h: (-h[1], h[0]))[:k]


class SearchFilter:
    """The generation filter an open Index's searches need (`view`), or None when it would admit every
    point: in embedded mode, when the collection held exactly the generation's points at open and no
    write happened since (this process is the only one that can write the folder it holds). Embedded
    Qdrant checks a filter point by point in Python, which is most of its search time
    (bench/results/scale.md); a server checks it against payload indexes, so it always gets it."""

    def __init__(self, store: QdrantStore, view: GenerationView) -> None:
        self.store, self.view = store, view
        at = store.write_count()
        self._exact_at = at if at is not None and store.count() == store.count(view=view) else None

    def current(self) -> GenerationView | None:
        if self._exact_at is not None and self.store.write_count() == self._exact_at:
            return None
        return self.view


class QdrantSegment:
    """A segment's dense part in the collection: its points are those with ids in [min_id, max_id]
    (gdn2_ingest.dense.VectorSegment), seen as the generation that opened it sees them (`view`: its
    tombstoned chunks are the ones marked dead at or before it, with no list of ids to send). `live`
    counts the points of its live chunks; those of its tombstoned chunks may be there or not (a
    compaction deletes them before it switches), so `ntotal` counts them as stored."""

    kind = KIND

    def __init__(self, store: QdrantStore, lo: int | None, hi: int | None, view: GenerationView,
                 n_dead: int) -> None:  # fmt: skip
        self.store = store
        self.lo, self.hi = lo, hi  # None: an empty segment
        self.view = view
        self.live = 0 if lo is None else store.count(view=view, id_range=(lo, hi))
        self.ntotal = self.live + n_dead

    def search(self, qvec: np.ndarray, k: int) -> list[tuple[int, float]]:
        if self.lo is None:
            return []
        hits = self.store.search(qvec, k, view=self.view, id_range=(self.lo, self.hi), exact=True)[0]
        return sorted(hits, key=lambda h: (-h[1], h[0]))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.store.vectors(ids)

    def stored_ids(self) -> np.ndarray | None:
        return None  # the count per id range is checked instead (listing ids would scroll them all)

    def save(self, path: Path) -> None:
        raise TypeError("a Qdrant segment keeps its vectors in the collection, not in a file")
