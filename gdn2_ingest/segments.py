"""Index segments: immutable folders of docstore rows, vectors and keyword postings, plus tombstones.

    INDEX/segments/seg-000004/
      docstore.sqlite   files, documents, chunks (gdn2_ingest.docstore) of the files this segment added
      dense.faiss       their vectors (gdn2_ingest.dense.FaissSegment), ids = chunk ids; absent when the
                        index keeps its vectors in Qdrant (gdn2_ingest.dense_qdrant)
      keyword/          their BM25 postings (gdn2_ingest.sparse.Postings)
      segment.json      name, chunk count, id range, dense kind, counts, every file's size

A generation (gdn2_ingest.store) lists its segments in id order and carries tombstones.json: per
segment, the file paths (and their chunk ids) that a later segment replaced or `rag remove`
deleted. Chunk and document ids grow across segments, so the segments' id ranges are disjoint and
ordered and a chunk id names its segment; compaction merges a run of neighbouring segments, which
keeps that true. A segment is written in a temp folder, fsynced and renamed before any generation
names it; one no generation names is deleted by the next writer.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gdn2_ingest.docstore import DocStore
from gdn2_ingest.errors import IndexBrokenError, VectorStoreError
from gdn2_ingest.store import file_sizes

SEGMENTS_DIR = "segments"
SEGMENT_MANIFEST = "segment.json"
DOCSTORE = "docstore.sqlite"
DENSE = "dense.faiss"
KEYWORD_DIR = "keyword"
TOMBSTONES = "tombstones.json"


def broken(folder: Path, what: str, why: str | BaseException) -> IndexBrokenError:
    """One line naming the damaged file of a generation or segment folder."""
    why = " ".join(str(why).split())
    if len(why) > 160:
        why = why[:157] + "..."
    kind = "segment" if folder.name.startswith("seg-") else "generation"
    index_dir = folder.parent.parent if kind == "segment" else folder.parent
    return IndexBrokenError(
        f"index {kind} {folder.name} in {index_dir} is broken: {folder / what} {why};"
        " restore it or re-ingest into a new --index folder"
    )


def check_sizes(folder: Path, sizes: dict[str, int]) -> None:
    """Every listed file exists with its recorded size (cheap: catches truncation and loss)."""
    for rel, size in sizes.items():
        try:
            actual = (folder / rel).stat().st_size
        except OSError:
            raise broken(folder, rel, "is missing") from None
        if actual != size:
            raise broken(
                folder, rel, f"has {actual} bytes, the manifest recorded {size} (truncated or overwritten)"
            )


@dataclass
class Tombstones:
    """Dead files and chunks per segment name: {"seg-000001": {"paths": [...], "chunks": [...]}}."""

    data: dict[str, dict[str, list]] = field(default_factory=dict)

    @classmethod
    def load(cls, gen: Path) -> Tombstones:
        p = gen / TOMBSTONES
        if not p.exists():
            return cls()
        try:
            return cls(json.loads(p.read_text()))
        except (OSError, ValueError) as exc:
            raise broken(gen, TOMBSTONES, f"cannot be read ({exc})") from exc

    def save(self, gen: Path) -> None:
        # lone surrogates (undecodable file names) are written as \\udcXX escapes and read back the same
        (gen / TOMBSTONES).write_text(json.dumps(self.data, sort_keys=True))

    def copy(self) -> Tombstones:
        return Tombstones(
            {k: {"paths": list(v["paths"]), "chunks": list(v["chunks"])} for k, v in self.data.items()}
        )

    def add(self, seg: str, paths: list[str], chunk_ids: list[int]) -> None:
        entry = self.data.setdefault(seg, {"paths": [], "chunks": []})
        entry["paths"] = sorted(set(entry["paths"]) | set(paths))
        entry["chunks"] = sorted(set(entry["chunks"]) | {int(i) for i in chunk_ids})

    def drop(self, seg: str) -> None:
        self.data.pop(seg, None)

    def dead_ids(self, seg: str) -> np.ndarray:
        return np.array(self.data.get(seg, {}).get("chunks", []), dtype=np.int64)

    def all_ids(self) -> set[int]:
        """Every tombstoned chunk id, of every segment."""
        return {int(i) for v in self.data.values() for i in v.get("chunks", [])}

    def dead_paths(self, seg: str) -> list[str]:
        return list(self.data.get(seg, {}).get("paths", []))

    def n_dead(self, seg: str | None = None) -> int:
        segs = [seg] if seg is not None else list(self.data)
        return sum(len(self.data.get(s, {}).get("chunks", [])) for s in segs)


class Segment:
    """One segment opened read-only with its tombstones; the dense and keyword parts load on first use
    (an edit reads only the docstores and the vectors of the changed files)."""

    def __init__(self, folder: Path, dead_ids: np.ndarray | None = None) -> None:
        self.folder = folder
        self.name = folder.name
        self.dead_ids = np.zeros(0, np.int64) if dead_ids is None else dead_ids
        try:
            self.info = json.loads((folder / SEGMENT_MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise broken(folder, SEGMENT_MANIFEST, f"cannot be read ({exc})") from exc
        check_sizes(folder, self.info.get("files") or {})
        try:
            self.docstore = DocStore(folder / DOCSTORE, readonly=True)
            self.docstore.db.execute("SELECT COUNT(*) FROM files").fetchone()
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors on a damaged file
            raise broken(folder, DOCSTORE, f"cannot be read ({type(exc).__name__}: {exc})") from exc
        self._dense = None
        self._keyword = None
        self.use_gpu: bool | None = None
        # the index's Qdrant collection when its vectors live there, and what the generation that
        # opened the segment sees of it (gdn2_ingest.dense_qdrant)
        self.vstore = None
        self.view = None

    @property
    def chunks(self) -> int:
        return int(self.info["chunks"])

    @property
    def min_id(self) -> int | None:
        return self.info.get("min_id")

    @property
    def in_store(self) -> bool:
        """The segment's vectors live in the index's vector store, not in a FAISS file."""
        from gdn2_ingest.dense_qdrant import KIND

        return self.info.get("dense_kind") == KIND

    @property
    def dense(self):
        if self._dense is None and self.in_store:
            from gdn2_ingest.dense_qdrant import QdrantSegment

            if self.vstore is None:
                raise broken(
                    self.folder, SEGMENT_MANIFEST, "keeps its vectors in Qdrant, the manifest names no store"
                )
            self._dense = QdrantSegment(
                self.vstore, self.min_id, self.info.get("max_id"), self.view, len(self.dead_ids)
            )
            if self._dense.live != self.chunks - len(self.dead_ids):
                raise broken(
                    self.folder, SEGMENT_MANIFEST,
                    f"holds {self.chunks - len(self.dead_ids)} live chunks, Qdrant collection"
                    f" {self.vstore.collection} {self._dense.live} of their points (the collection no longer"
                    " matches the index)",
                )  # fmt: skip
        if self._dense is None:
            from gdn2_ingest.dense import FaissSegment

            try:
                self._dense = FaissSegment.load(self.folder / DENSE, self.dead_ids, use_gpu=self.use_gpu)
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError for any unreadable file
                raise broken(self.folder, DENSE, "cannot be read by faiss (truncated or corrupted)") from exc
            if self._dense.ntotal != self.chunks:
                raise broken(
                    self.folder,
                    DENSE,
                    f"holds {self._dense.ntotal} vectors, the segment {self.chunks} chunks",
                )
        return self._dense

    @property
    def keyword(self):
        if self._keyword is None:
            from gdn2_ingest.sparse import KeywordSegment, Postings

            try:
                postings = Postings.load(self.folder / KEYWORD_DIR)
            except Exception as exc:  # noqa: BLE001 - numpy/json errors on a damaged file
                raise broken(
                    self.folder, KEYWORD_DIR, f"cannot be read ({type(exc).__name__}: {exc})"
                ) from exc
            if len(postings.ids) != self.chunks:
                raise broken(
                    self.folder, KEYWORD_DIR, f"holds {len(postings.ids)} chunks, the segment {self.chunks}"
                )
            self._keyword = KeywordSegment(postings, self.dead_ids)
        return self._keyword

    def load(self) -> Segment:
        """Load every part now, so damage shows at open, not at the first search."""
        _ = self.dense, self.keyword
        return self

    def close(self) -> None:
        self.docstore.close()


@contextmanager
def one_faiss_thread():
    """One query is searched fastest on one thread; OpenMP's team waits badly on a busy machine."""
    import faiss

    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(n)


def check_segment(seg: Segment) -> None:
    """The full check of a segment before a generation first names it: every part loads, the three
    hold the same chunk ids, and a probe search of each finds a stored chunk."""
    from gdn2_ingest.sparse import _tok

    ids = seg.docstore.chunk_ids()
    if len(ids) != seg.chunks:
        raise broken(seg.folder, DOCSTORE, f"holds {len(ids)} chunks, the segment manifest says {seg.chunks}")
    seg.load()
    stored = seg.dense.stored_ids()
    if stored is not None and not np.array_equal(np.sort(stored), ids):
        raise broken(seg.folder, DENSE, "holds other chunk ids than the docstore")
    if not np.array_equal(np.asarray(seg.keyword.p.ids), ids):
        raise broken(seg.folder, KEYWORD_DIR, "holds other chunk ids than the docstore")
    live = ids[~np.isin(ids, seg.dead_ids)]
    if not len(live):
        return
    # a FAISS file, or the segment's points in the index's Qdrant collection
    what, fails = (
        (SEGMENT_MANIFEST, "names chunks whose Qdrant points fail a probe search")
        if seg.in_store else (DENSE, "fails a probe search")
    )  # fmt: skip
    probe = seg.dense.vectors(live[:1])[0]
    try:
        with one_faiss_thread():
            hits = seg.dense.search(probe, 1)
    except VectorStoreError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise broken(seg.folder, what, f"{fails} ({exc})") from exc
    if not hits or hits[0][1] < 0.9 * float(np.dot(probe, probe)):
        raise broken(seg.folder, what, f"{fails} (a stored vector does not find itself)")
    from gdn2_ingest.sparse import search_segments

    for c in seg.docstore.get_chunks([int(i) for i in live[:5]]):
        words = [t for t in _tok([f"{c.title}\n{c.section}\n{c.text}"])[0] if t in seg.keyword.p.vocab]
        if words:
            if not search_segments([seg.keyword], " ".join(words[:8]), 1):
                raise broken(seg.folder, KEYWORD_DIR, "fails a probe search (a chunk's words find nothing)")
            break


def write_segment(tmp: Path, db: DocStore, vecs: np.ndarray | None, dim: int, exact_max: int, postings=None,
                  on_write=None, store=None) -> dict:  # fmt: skip
    """Finish a segment in `tmp` from its filled docstore `db` (closed here): dense part from `vecs`
    (aligned with the docstore's ids in order), keyword part from `postings` or the texts.
    `store`: the index's Qdrant collection, which gets the vectors as points instead of a FAISS file
    (`vecs` None: a compaction, whose chunks' points are there already). `on_write(name)` is told
    which file is being written (disk errors name it). Returns segment.json."""
    from gdn2_ingest.sparse import Postings

    say = on_write or (lambda _name: None)
    ids, _ = db.ids_and_hashes()
    if store is None:
        from gdn2_ingest.dense import FaissSegment

        say(DENSE)
        dense = FaissSegment.build(ids, vecs, dim, exact_max)
        dense.save(tmp / DENSE)
        kind = dense.kind
    else:
        from gdn2_ingest.dense_qdrant import KIND, write_points

        if vecs is not None and len(ids):
            say(f"the points of {tmp.name.split('.tmp')[0]} in Qdrant")
            write_points(store, tmp.name.split(".tmp")[0], ids, vecs, *db.labels())
        kind = KIND
    say(KEYWORD_DIR)
    (postings or Postings.build(list(db.iter_texts()))).save(tmp / KEYWORD_DIR)
    files_n, docs_n, chunks_n, per = db.counts()
    say(DOCSTORE)
    db.checkpoint()
    db.close()
    info = {
        "name": tmp.name.split(".tmp")[0],
        "chunks": int(len(ids)),
        "min_id": int(ids[0]) if len(ids) else None,
        "max_id": int(ids[-1]) if len(ids) else None,
        "dense_kind": kind,
        "counts": {"files": files_n, "documents": docs_n, "chunks": chunks_n, "per_domain": per},
        "files": file_sizes(tmp, SEGMENT_MANIFEST),
    }
    say(SEGMENT_MANIFEST)
    (tmp / SEGMENT_MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def next_segment_name(index_dir: Path) -> str:
    nums = [
        int(p.name[4:10]) for p in (index_dir / SEGMENTS_DIR).glob("seg-[0-9]*") if p.name[4:10].isdigit()
    ]
    return f"seg-{max(nums, default=0) + 1:06d}"


def prune_segments(index_dir: Path, referenced: set[str]) -> None:
    """Delete temp segments of dead runs and segments no generation on disk names (under the writer lock)."""
    root = index_dir / SEGMENTS_DIR
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name not in referenced:
            shutil.rmtree(p, ignore_errors=True)
