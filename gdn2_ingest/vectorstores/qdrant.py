"""The distributed backend: a Qdrant collection (a server or cluster, or embedded for tests)."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from gdn2_ingest.errors import VectorStoreError
from gdn2_ingest.vectorstores.base import Hits, Where, check_rows, path_keys

# points per upsert request: large enough to amortise a round trip, small enough for the 32 MB
# default request limit of a Qdrant server (1,000 x 384 floats as JSON is about 4 MB)
UPSERT_BATCH = 1000
# point ids per retrieve / set-payload / delete request
IDS_BATCH = 10_000
# payload fields the index filters on, with their Qdrant index types (a server only)
PAYLOAD_INDEXES = {"domain": "KEYWORD", "paths": "KEYWORD", "chunk_id": "INTEGER", "dead_from": "INTEGER"}


@dataclass(frozen=True)
class GenerationView:
    """The points one index generation sees (gdn2_ingest.dense_qdrant): ids below its next chunk id
    (higher ones belong to a writer that has not switched yet, or was killed), not marked dead at or
    before its number."""

    next_id: int
    generation: int


class _SharedLocal:
    """Embedded Qdrant locks its folder for one client; a process that reads an index while it writes
    it (RAG.ingest with an open view) shares one client per folder, released with the last user. As
    no other process can write the folder meanwhile, the writes of this one, counted per folder,
    are all the writes (`QdrantStore.write_count`)."""

    lock = threading.Lock()
    clients: dict[str, list] = {}  # folder -> [client, users, writes]

    @classmethod
    def close_all(cls) -> None:
        """At exit, while the interpreter still works (a client closed by its finaliser during
        shutdown prints a traceback)."""
        with cls.lock:
            for client, *_ in cls.clients.values():
                client.close()
            cls.clients.clear()

    @classmethod
    def acquire(cls, folder: str):
        from qdrant_client import QdrantClient

        with cls.lock:
            entry = cls.clients.get(folder)
            if entry is None:
                # readers and writers may run in other threads than the one that opened the folder
                # (`rag serve`); the index lock and RAG's lock keep them from writing at once
                if not cls.clients:
                    atexit.register(cls.close_all)
                entry = cls.clients[folder] = [
                    QdrantClient(path=folder, force_disable_check_same_thread=True),
                    0,
                    0,
                ]
            entry[1] += 1
            return entry[0]

    @classmethod
    def wrote(cls, folder: str) -> None:
        with cls.lock:
            cls.clients[folder][2] += 1

    @classmethod
    def writes(cls, folder: str) -> int:
        return cls.clients[folder][2]

    @classmethod
    def release(cls, folder: str) -> None:
        with cls.lock:
            entry = cls.clients.get(folder)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del cls.clients[folder]
                entry[0].close()


class QdrantStore:
    """A Qdrant collection of (id, vector, payload) points with DOT distance (the vectors are already
    normalised, so this is cosine, scored exactly as FAISS scores it). Payload: chunk_id (the point
    id again, for range filters), domain, path, paths (the path and every folder above it, so a
    folder filter is one keyword match) and any `extra` fields given to `add`.

    Args:
        dim: vector width.
        collection: collection name; created when missing (with payload indexes on a server).
        url: a Qdrant server ("http://host:6333"); None runs Qdrant embedded in this process.
        location: embedded storage when `url` is None: ":memory:" or a folder (kept across runs; one
            process at a time).
        exact: search every point (the reference result) instead of Qdrant's HNSW graph; embedded
            Qdrant always searches exactly.
        api_key: for a server that requires one.
        create: create the collection when it is missing (else VectorStoreError).
        float16: a server stores the vectors as float16 (half the memory; the index rounds its
            vectors to float16 first, as its FAISS segments store them, so nothing is lost).

    Failures of the client (server unreachable, an embedded folder open in another process) raise
    VectorStoreError with one line naming the store.
    """

    def __init__(
        self, dim: int, collection: str = "gdn2", url: str | None = None, location: str = ":memory:",
        exact: bool = False, api_key: str | None = None, create: bool = True, float16: bool = False,
    ) -> None:  # fmt: skip
        try:
            from qdrant_client import QdrantClient, models
        except ImportError as exc:
            raise VectorStoreError(
                f"the Qdrant store needs qdrant-client: pip install 'gdn2-rag[qdrant]' ({exc})"
            ) from exc
        self.models = models
        self.dim = dim
        self.collection = collection
        self.exact = exact
        self.float16 = float16
        self.server = url is not None
        self.where = f"server {url}" if url is not None else f"embedded {location}"
        self.folder = None if url is not None else location
        self._shared = None
        with self.calls(f"open collection {collection}"):
            if url is not None:
                # no version probe: against an unreachable server it warns before the one-line error
                self.client = QdrantClient(url=url, api_key=api_key, check_compatibility=False)
            elif location == ":memory:":
                self.client = QdrantClient(location=":memory:")
            else:
                self.client = _SharedLocal.acquire(location)
                self._shared = location
        try:
            with self.calls(f"open collection {collection}"):
                self._open_collection(create, url is not None)
        except BaseException:
            self.close()
            raise

    def _open_collection(self, create: bool, server: bool) -> None:
        models, collection = self.models, self.collection
        if not self.client.collection_exists(collection):
            if not create:
                raise VectorStoreError(f"Qdrant collection {collection} ({self.where}) does not exist")
            datatype = models.Datatype.FLOAT16 if self.float16 else None
            self.client.create_collection(
                collection,
                vectors_config=models.VectorParams(
                    size=self.dim, distance=models.Distance.DOT, datatype=datatype
                ),
            )
            if server:  # embedded Qdrant has no payload indexes (and warns about them)
                for field, kind in PAYLOAD_INDEXES.items():
                    self.client.create_payload_index(
                        collection, field, getattr(models.PayloadSchemaType, kind)
                    )
        got = self.client.get_collection(collection).config.params.vectors.size
        if got != self.dim:
            raise ValueError(f"Qdrant collection {collection!r} holds {got}-dim vectors, not {self.dim}")

    def write_count(self) -> int | None:
        """How many writes this process made to an embedded folder (the only writer while it holds
        it); None for a server, which other processes may write at any time."""
        return None if self._shared is None else _SharedLocal.writes(self._shared)

    @contextmanager
    def calls(self, what: str, write: bool = False) -> Iterator[None]:
        """Turn the client's failures into one VectorStoreError line naming the store; `write`: the
        calls change the collection (counted for `write_count` before and after, so a count taken
        while they run differs from one taken after)."""
        from qdrant_client.http.exceptions import ApiException

        counted = write and self._shared is not None
        if counted:
            _SharedLocal.wrote(self._shared)
        try:
            yield
        except ApiException as exc:
            why = " ".join(str(exc).split())[:200]
            raise VectorStoreError(f"Qdrant ({self.where}) failed to {what}: {why}") from exc
        except RuntimeError as exc:
            if "already accessed" not in str(exc):
                raise
            raise VectorStoreError(
                f"the embedded Qdrant folder {self.folder} is open in another process;"
                " embedded Qdrant serves one process at a time (share an index through a Qdrant server:"
                " --qdrant-url)"
            ) from exc
        finally:
            if counted:
                _SharedLocal.wrote(self._shared)

    # the VectorStore interface ------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray, domains: list[str], paths: list[str],
            extra: dict | None = None) -> None:  # fmt: skip
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        check_rows(self.dim, ids, vectors, domains, paths)
        payloads = [
            {"chunk_id": i, "domain": d, "path": p, "paths": path_keys(p), **(extra or {})}
            for i, d, p in zip(ids.tolist(), domains, paths, strict=True)
        ]
        with self.calls("write points", write=True):
            for s in range(0, len(ids), UPSERT_BATCH):
                e = s + UPSERT_BATCH
                batch = self.models.Batch(
                    ids=ids[s:e].tolist(), vectors=vectors[s:e].tolist(), payloads=payloads[s:e]
                )
                self.client.upsert(self.collection, points=batch, wait=True)

    def delete(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).tolist()
        with self.calls("delete points", write=True):
            for s in range(0, len(ids), IDS_BATCH):
                selector = self.models.PointIdsList(points=ids[s : s + IDS_BATCH])
                self.client.delete(self.collection, selector, wait=True)

    def filter(self, where: Where | None = None, view: GenerationView | None = None,
               id_range: tuple[int, int] | None = None):  # fmt: skip
        """The Qdrant filter admitting what `where` admits, as `view` sees it, with ids in [lo, hi]."""
        m = self.models
        must, must_not = [], []
        if where is not None and where.domain is not None:
            must.append(m.FieldCondition(key="domain", match=m.MatchValue(value=where.domain)))
        if where is not None and where.path is not None:
            must.append(m.FieldCondition(key="paths", match=m.MatchValue(value=where.folder())))
        if where is not None and where.any_paths is not None:
            anyof = [q.rstrip("/") or "/" for q in where.any_paths]
            must.append(m.FieldCondition(key="paths", match=m.MatchAny(any=anyof)))
        if view is not None:
            must.append(m.FieldCondition(key="chunk_id", range=m.Range(lt=view.next_id)))
            must_not.append(m.FieldCondition(key="dead_from", range=m.Range(lte=view.generation)))
        if id_range is not None:
            must.append(m.FieldCondition(key="chunk_id", range=m.Range(gte=id_range[0], lte=id_range[1])))
        return m.Filter(must=must, must_not=must_not) if must or must_not else None

    def search(self, queries: np.ndarray, k: int, where: Where | None = None, *,
               view: GenerationView | None = None, id_range: tuple[int, int] | None = None,
               exact: bool | None = None) -> Hits:  # fmt: skip
        """Best k per query among the points the filter (`filter`'s arguments) admits; `exact`
        overrides the store's setting for this call."""
        m = self.models
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if k <= 0 or (where is not None and where.any_paths is not None and not where.any_paths):
            return [[] for _ in range(len(queries))]
        flt = self.filter(where, view, id_range)
        # embedded Qdrant always searches exactly (and warns about search params)
        params = m.SearchParams(exact=self.exact if exact is None else exact) if self.server else None
        requests = [m.QueryRequest(query=q.tolist(), limit=k, filter=flt, params=params) for q in queries]
        with self.calls("search"):
            out = self.client.query_batch_points(self.collection, requests=requests)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in out]

    def count(self, view: GenerationView | None = None, id_range: tuple[int, int] | None = None,
              ) -> int:  # fmt: skip
        """Points the filter (`filter`'s arguments) admits."""
        flt = self.filter(None, view, id_range)
        with self.calls("count points"):
            return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def close(self) -> None:
        if self._shared is not None:
            _SharedLocal.release(self._shared)
            self._shared = None
        elif getattr(self, "client", None) is not None:
            self.client.close()
        self.client = None

    # what an index's generations need (gdn2_ingest.dense_qdrant) ----------------------------------

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids`, in that order; VectorStoreError if one is missing."""
        ids = np.asarray(ids, dtype=np.int64)
        found: dict[int, list[float]] = {}
        with self.calls("read vectors"):
            for s in range(0, len(ids), IDS_BATCH):
                part = ids[s : s + IDS_BATCH].tolist()
                for p in self.client.retrieve(self.collection, part, with_vectors=True, with_payload=False):
                    found[int(p.id)] = p.vector
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise VectorStoreError(
                f"Qdrant collection {self.collection} ({self.where}) lacks the vectors of {len(missing)}"
                f" chunks (e.g. chunk {missing[0]}); it no longer matches the index"
            )
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for r, i in enumerate(ids.tolist()):
            out[r] = found[i]
        return out

    def mark_dead(self, ids: np.ndarray, generation: int) -> None:
        """Mark points dead from `generation` on (earlier generations still see them)."""
        ids = np.asarray(ids, dtype=np.int64).tolist()
        with self.calls("mark deleted points", write=True):
            for s in range(0, len(ids), IDS_BATCH):
                self.client.set_payload(self.collection, payload={"dead_from": int(generation)},
                                        points=ids[s : s + IDS_BATCH], wait=True)  # fmt: skip

    def forget_after(self, view: GenerationView) -> None:
        """Undo what writers after `view` left without switching to a new generation (killed): delete
        points with ids from view.next_id on, and unmark points marked dead after view.generation."""
        m = self.models
        later = m.Filter(must=[m.FieldCondition(key="chunk_id", range=m.Range(gte=view.next_id))])
        marked = m.Filter(must=[m.FieldCondition(key="dead_from", range=m.Range(gt=view.generation))])
        with self.calls("remove the points of a killed writer", write=True):
            self.client.delete(self.collection, m.FilterSelector(filter=later), wait=True)
            self.client.delete_payload(self.collection, keys=["dead_from"], points=marked, wait=True)
