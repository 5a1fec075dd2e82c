"""`upgrade_index`: turn an index of an earlier format into the current one without re-embedding.

Format 2 (the release before segments) kept one generation folder holding everything:

    INDEX/gen-000007/  manifest.json, docstore.sqlite, dense.faiss (IndexIDMap2 over float16 flat or
                       HNSW storage, ids = chunk ids), bm25/ (bm25s score matrices + ids.npy)

Format 3 (gdn2_ingest.store) lists immutable segments. The upgrade makes the old generation one
segment: its docstore rows copied as they are (ids, anchors, hashes and the id counters unchanged),
its vectors read back from the old FAISS index (the float16 values re-stored exactly, so dense
scores do not move), keyword postings built from the stored chunk texts by the segment writer
(bm25s's score matrices cannot be turned back into postings). Then a generation naming that one
segment, with the old settings (embedder, chunking, skips, config) and counts.

It runs as any writer does (gdn2_ingest.segments_write): under the index lock, the segment and the
generation written aside, the segment checked fully, and CURRENT switched atomically only then.
Interrupted or failing at any point, CURRENT still names the old generation, which was never
touched and stays readable by the previous release; the next writer removes the leftovers. After
the switch the old generation is deleted like any superseded one (kept while a reader holds it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gdn2_ingest import store
from gdn2_ingest.docstore import DocStore
from gdn2_ingest.errors import DiskSpaceError, IndexFormatError
from gdn2_ingest.segments import DOCSTORE, Tombstones, broken, check_sizes, write_segment
from gdn2_ingest.segments_write import add_counts, commit_generation, new_segment_dir, seal_segment

# file names inside a format-2 generation folder
V2_DENSE = "dense.faiss"
V2_BM25_DIR = "bm25"
# disk an upgrade needs beside the old generation: the new segment is about as big (0.997x at 10k
# chunks, bench/results/upgrade.md); twice that leaves room for SQLite's WAL while it is written
UPGRADE_BYTES_PER_OLD_BYTE = 2.0
UPGRADE_MARGIN = 4_000_000


@dataclass
class UpgradeReport:
    """What `upgrade_index` did (`changed` False: the index already had the current format)."""

    index_dir: str
    from_format: int | None = None
    to_format: int = store.FORMAT_VERSION
    previous_generation: str = ""
    generation: str = ""
    chunks_total: int = 0
    changed: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def live_format(index_dir: Path) -> int | None:
    """The format version of the live generation (None: no generation yet); reads no other file."""
    gen = store.current_generation(index_dir)
    if gen is None:
        return None
    return _raw_manifest(gen).get("format_version")


def _raw_manifest(gen: Path) -> dict:
    try:
        return json.loads((gen / store.MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"unreadable manifest in {gen}: {exc}") from exc


def upgrade_index(
    index_dir: str | os.PathLike, lock_timeout: float = 600.0, notify: Callable[[str], None] | None = None
) -> UpgradeReport:
    """Upgrade the index at `index_dir` to the current format in place (no re-embedding; see the
    module docstring). An index already in the current format is left as it is (`changed` False).

    Raises IndexNotFoundError (no index), IndexFormatError (a format this version cannot read or
    upgrade: a newer one), IndexBrokenError (the old generation is damaged), IndexLockedError,
    DiskSpaceError. The live generation is unchanged after any error or interruption.
    """
    t0 = time.perf_counter()
    index_dir = Path(index_dir).expanduser().absolute()
    store.require_generation(index_dir)
    with store.IndexLock(index_dir, lock_timeout, on_wait=notify):
        store.prune(index_dir)
        report = upgrade_locked(index_dir)
    report.seconds = time.perf_counter() - t0
    return report


def upgrade_before_ingest(
    index_dir: Path, identity: dict, notify: Callable[[str], None] | None
) -> UpgradeReport | None:
    """Called by an ingest under the index lock: upgrade an old-format live generation first (after
    checking that the ingest's embedder is the one it was built with, so a mismatch changes nothing)."""
    gen = store.current_generation(index_dir)
    if gen is None:
        return None
    raw = _raw_manifest(gen)
    version = raw.get("format_version")
    if version not in store.UPGRADABLE_FORMATS:
        return None
    store.check_embedder(index_dir, raw, identity)
    if notify is not None:
        notify(
            f"upgrading the index at {index_dir} from format {version} to {store.FORMAT_VERSION} first"
            " (no re-embedding)"
        )
    return upgrade_locked(index_dir)


def upgrade_locked(index_dir: Path) -> UpgradeReport:
    """The upgrade itself; the caller holds the index lock."""
    t0 = time.perf_counter()
    gen = store.require_generation(index_dir)
    raw = _raw_manifest(gen)
    version = raw.get("format_version")
    report = UpgradeReport(str(index_dir), from_format=version, previous_generation=gen.name)
    if version == store.FORMAT_VERSION:
        m = store.read_manifest(gen)
        report.generation = gen.name
        report.chunks_total = int((m.get("counts") or {}).get("chunks", 0))
        return report
    if version not in store.UPGRADABLE_FORMATS:
        store.read_manifest(gen)  # the refusal of a format this version cannot read
        raise IndexFormatError(f"{index_dir} has index format {version}, which cannot be upgraded")
    check_sizes(gen, raw.get("files") or {})
    need = int(store.tree_bytes(gen) * UPGRADE_BYTES_PER_OLD_BYTE + UPGRADE_MARGIN)
    free = store.free_bytes(index_dir)
    if free < need:
        raise DiskSpaceError(
            f"not enough disk space to upgrade the index at {index_dir}: it needs about {store.human(need)}"
            f" beside the old generation, {store.human(free)} are free; free some space first"
        )
    made: list[Path] = []
    writing = {"file": DOCSTORE}
    try:
        report.generation = _write(index_dir, gen, raw, made, writing, report)
    except BaseException as exc:
        _discard(index_dir, gen, made)
        if store.is_disk_error(exc):
            raise DiskSpaceError(
                f"cannot write {writing['file']} while upgrading the index in {index_dir}:"
                f" {store.disk_reason(exc)}; it needs about {store.human(need)} there,"
                f" {store.human(store.free_bytes(index_dir))} free; generation {gen.name} is unchanged"
            ) from exc
        raise
    report.changed = True
    report.seconds = time.perf_counter() - t0
    return report


def _write(
    index_dir: Path, gen: Path, raw: dict, made: list[Path], writing: dict, report: UpgradeReport
) -> str:
    """Write the segment and the generation naming it, check and publish them; returns its name."""

    def say(name: str) -> None:
        writing["file"] = name

    ts = time.perf_counter()
    tmp = new_segment_dir(index_dir)
    made.append(tmp)
    _copy_docstore(gen / DOCSTORE, tmp / DOCSTORE, gen)
    db = DocStore(tmp / DOCSTORE)
    try:
        ids, _ = db.ids_and_hashes()
        next_ids = db.next_ids()
        dim = int(raw["embedder"]["dim"])
        vecs = read_v2_vectors(gen, ids, dim)
    except BaseException:
        db.close()
        raise
    report.stage_seconds["read"] = time.perf_counter() - ts
    ts = time.perf_counter()
    exact_max = int((raw.get("dense") or {}).get("exact_max", 200_000))
    info = write_segment(tmp, db, vecs, dim, exact_max, on_write=say)
    del vecs
    counts = {"files": 0, "documents": 0, "chunks": 0, "per_domain": {}}
    add_counts(counts, info)
    want = (raw.get("counts") or {}).get("chunks")
    if want is not None and want != counts["chunks"]:
        raise broken(gen, store.MANIFEST, f"counts {want} chunks, its docstore holds {counts['chunks']}")
    name = seal_segment(tmp)
    made.append(tmp.parent / name)
    report.stage_seconds["write"] = time.perf_counter() - ts
    manifest = {k: raw[k] for k in ("embedder", "chunking", "skips", "config") if k in raw}
    manifest["dense"] = {"exact_max": exact_max}
    manifest["upgraded_from"] = {"format_version": raw.get("format_version"), "generation": gen.name}
    new_gen, report.stage_seconds["verify"] = commit_generation(
        index_dir, manifest, [name], Tombstones(), counts, next_ids, full={name}, on_write=say, made=made
    )
    report.chunks_total = counts["chunks"]
    return new_gen


def _copy_docstore(src: Path, dst: Path, gen: Path) -> None:
    """A consistent copy of the old docstore (rows and id counters) through SQLite's backup API."""
    try:
        old = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        try:
            old.execute("SELECT COUNT(*) FROM chunks").fetchone()
            new = sqlite3.connect(str(dst))
            try:
                old.backup(new)
            finally:
                new.close()
        finally:
            old.close()
    except sqlite3.DatabaseError as exc:
        if store.is_disk_error(exc):
            raise
        raise broken(gen, DOCSTORE, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def read_v2_vectors(gen: Path, ids: np.ndarray, dim: int) -> np.ndarray:
    """The old generation's vectors in the order of `ids` (the docstore's chunk ids, ascending).

    The old dense.faiss is an IndexIDMap2 over float16 flat or HNSW storage; `reconstruct_n` on the
    storage gives every vector in insertion order and the id map names them, so no per-id lookup."""
    from gdn2_ingest.dense import _faiss

    faiss = _faiss()
    try:
        index = faiss.read_index(str(gen / V2_DENSE))
        stored = faiss.vector_to_array(index.id_map).astype(np.int64)
        base = faiss.downcast_index(index.index)
        vecs = base.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, dim), np.float32)
    except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError for any unreadable file
        raise broken(gen, V2_DENSE, "cannot be read by faiss (truncated or corrupted)") from exc
    if index.d != dim:
        raise broken(gen, V2_DENSE, f"holds {index.d}-dim vectors, the manifest's embedder {dim}")
    order = np.argsort(stored, kind="stable")
    if not np.array_equal(stored[order], ids):
        raise broken(gen, V2_DENSE, f"holds other chunk ids ({len(stored)}) than the docstore ({len(ids)})")
    if np.array_equal(order, np.arange(len(order))):
        return np.ascontiguousarray(vecs, dtype=np.float32)
    return np.ascontiguousarray(vecs[order], dtype=np.float32)


def _discard(index_dir: Path, old_gen: Path, made: list[Path]) -> None:
    """Remove what a failed upgrade wrote, unless CURRENT already names it."""
    try:
        if store.current_generation(index_dir) != old_gen:
            return
    except Exception:  # noqa: BLE001 - CURRENT unreadable: leave the rest for the next writer's prune
        return
    for p in made:
        shutil.rmtree(p, ignore_errors=True)
