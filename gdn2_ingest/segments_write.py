"""Writing generations of segments: the live view a writer starts from, tombstones for replaced and
removed files, a new generation's manifest, compaction, and `remove_paths`.

Every function here runs under the index lock (gdn2_ingest.store.IndexLock). A new generation is
always: the previous segments (some replaced by a merged one), maybe one new segment, the previous
tombstones plus new ones, counts updated from the previous counts, all written into a temp folder,
checked (the new segment fully, the others by size) and published atomically by store.publish.

Automatic compaction (`plan_compaction`) runs after an update when the generation has more than
`max_segments` segments or more than `max_deleted_fraction` of its chunks are tombstoned. It merges
the newest segments, enough to get back to `max_segments`, then each older one no bigger than the
run so far (so a big compacted segment is rewritten only once the small ones after it have grown
as big), or every segment when the tombstones pass their threshold. `rag compact` merges every
segment into one. A merge keeps chunk and document ids, so search results are the same before and after.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gdn2_ingest import store
from gdn2_ingest.config import IngestConfig
from gdn2_ingest.docstore import DocStore
from gdn2_ingest.errors import IngestError
from gdn2_ingest.segments import (
    DOCSTORE,
    SEGMENTS_DIR,
    Segment,
    Tombstones,
    next_segment_name,
    write_segment,
)
from gdn2_ingest.types import IngestReport


class NotInIndexError(IngestError):
    """`rag remove` was given a path the index holds no file under."""


@dataclass
class LiveView:
    """The live generation as a writer sees it: segments, tombstones and which segment holds each file."""

    gen: Path | None
    manifest: dict
    segments: list[Segment] = field(default_factory=list)
    tomb: Tombstones = field(default_factory=Tombstones)
    files: dict[str, tuple] = field(default_factory=dict)  # path -> (size, mtime_ns, hash, skip reason)
    owner: dict[str, Segment] = field(default_factory=dict)

    @classmethod
    def open(cls, index_dir: Path, gen: Path | None, manifest: dict | None, check: bool = True,
             vstore=None) -> LiveView:  # fmt: skip
        """Open the live generation; with `check`, every segment is checked fully first (a damaged
        generation is neither built upon nor reported ready). `vstore`: the index's Qdrant collection
        (gdn2_ingest.dense_qdrant), None for FAISS segments."""
        if gen is None:
            return cls(None, {})
        from gdn2_ingest.index import check_counts, open_segments
        from gdn2_ingest.segments import check_segment

        segs, tomb = open_segments(index_dir, gen, manifest, vstore=vstore)
        view = cls(gen, manifest, segs, tomb)
        try:
            check_counts(gen, manifest, segs, tomb)
            for s in segs:
                if check:
                    check_segment(s)
                dead = set(tomb.dead_paths(s.name))
                for p, v in s.docstore.files().items():
                    if p not in dead:
                        view.files[p] = v
                        view.owner[p] = s
        except BaseException:
            view.close()
            raise
        return view

    def close(self) -> None:
        for s in self.segments:
            s.close()

    def next_ids(self) -> tuple[int, int]:
        n = self.manifest.get("next_ids") or {}
        return int(n.get("chunk", 1)), int(n.get("document", 1))

    def counts(self) -> dict:
        c = self.manifest.get("counts") or {}
        return {"files": c.get("files", 0), "documents": c.get("documents", 0), "chunks": c.get("chunks", 0),
                "per_domain": dict(c.get("per_domain") or {})}  # fmt: skip

    def reusable(self, paths: list[str]) -> dict[str, tuple[Segment, int]]:
        """embed_hash -> (segment, chunk id) of the chunks of `paths` (their vectors can be reused)."""
        out: dict[str, tuple[Segment, int]] = {}
        for p in paths:
            seg = self.owner.get(p)
            if seg is not None:
                for h, i in seg.docstore.ids_by_embed_hash([p]).items():
                    out[h] = (seg, i)
        return out

    def vectors(self, wanted: dict[str, tuple[Segment, int]]) -> dict[str, np.ndarray]:
        """embed_hash -> vector, read from the segments' dense parts."""
        out: dict[str, np.ndarray] = {}
        by_seg: dict[str, list[str]] = {}
        for h, (seg, _) in wanted.items():
            by_seg.setdefault(seg.name, []).append(h)
        for hashes in by_seg.values():
            seg = wanted[hashes[0]][0]
            vecs = seg.dense.vectors(np.array([wanted[h][1] for h in hashes], dtype=np.int64))
            out.update(zip(hashes, vecs, strict=True))
        return out


def tombstone(view: LiveView, tomb: Tombstones, counts: dict, paths: list[str]) -> int:
    """Mark the live files `paths` dead in `tomb` and subtract them from `counts`; returns chunks removed."""
    by_seg: dict[str, list[str]] = {}
    for p in paths:
        if p in view.owner:
            by_seg.setdefault(view.owner[p].name, []).append(p)
    removed = 0
    for name, ps in by_seg.items():
        seg = view.owner[ps[0]]
        tomb.add(name, ps, seg.docstore.chunk_ids_of(ps))
        files, docs, chunks, per = seg.docstore.counts_of(ps)
        counts["files"] -= files
        counts["documents"] -= docs
        counts["chunks"] -= chunks
        for d, n in per.items():
            counts["per_domain"][d] = counts["per_domain"].get(d, 0) - n
        removed += chunks
    return removed


def add_counts(counts: dict, info: dict) -> None:
    c = info["counts"]
    for key in ("files", "documents", "chunks"):
        counts[key] += c[key]
    for d, n in c["per_domain"].items():
        counts["per_domain"][d] = counts["per_domain"].get(d, 0) + n
    counts["per_domain"] = {d: n for d, n in sorted(counts["per_domain"].items()) if n}


def new_segment_dir(index_dir: Path) -> Path:
    (index_dir / SEGMENTS_DIR).mkdir(exist_ok=True)
    tmp = index_dir / SEGMENTS_DIR / f"{next_segment_name(index_dir)}.tmp-{os.getpid()}"
    tmp.mkdir()
    return tmp


def seal_segment(tmp: Path) -> str:
    """fsync a finished segment and rename it to its final name (still unnamed by any generation)."""
    name = tmp.name.split(".tmp")[0]
    store.fsync_tree(tmp)
    os.replace(tmp, tmp.parent / name)
    store.fsync_dir(tmp.parent)
    return name


def discard(index_dir: Path, leftovers: list[Path]) -> None:
    """Remove what a failed writer made (temp folders, a sealed segment or generation not switched to)."""
    try:
        cur = store.current_generation(index_dir)
        live = set(store.read_manifest(cur).get("segments") or []) | {cur.name} if cur else set()
    except Exception:  # noqa: BLE001 - CURRENT unreadable: leave the rest for the next prune
        return
    for p in leftovers:
        if p.name.split(".tmp")[0] not in live or ".tmp" in p.name:
            shutil.rmtree(p, ignore_errors=True)


def dense_kind(index_dir: Path, segments: list[str]) -> str:
    import json

    kinds = set()
    for name in segments:
        info = json.loads((index_dir / SEGMENTS_DIR / name / "segment.json").read_text())
        if info["chunks"]:
            kinds.add(info["dense_kind"])
    return "+".join(sorted(kinds)) or "flat"


def commit_generation(
    index_dir: Path, manifest: dict, segments: list[str], tomb: Tombstones, counts: dict,
    next_ids: tuple[int, int], full: set[str], on_write: Callable[[str], None] | None = None,
    made: list[Path] | None = None, vstore=None, dead_before: Tombstones | None = None,
) -> tuple[str, float]:  # fmt: skip
    """Write, check and publish the generation naming `segments`; returns (its name, check seconds).
    `manifest` carries the settings (embedder, chunking, skips, config, vector store) and is
    completed here. `vstore`: the index's Qdrant collection, where the chunks `tomb` holds and
    `dead_before` (the live generation's tombstones) did not are marked dead from this generation on
    (gdn2_ingest.dense_qdrant), before it is checked and published."""
    from gdn2_ingest.dense_qdrant import generation_number, mark_dead
    from gdn2_ingest.index import check_generation

    say = on_write or (lambda _name: None)
    name = store.next_generation_name(index_dir)
    tmp = index_dir / f"{name}.tmp-{os.getpid()}"
    if made is not None:
        made += [tmp, index_dir / name]
    tmp.mkdir()
    say(store.MANIFEST)
    tomb = Tombstones({s: v for s, v in tomb.data.items() if s in segments})
    mark_dead(vstore, (dead_before or Tombstones()).all_ids(), tomb.all_ids(), generation_number(name))
    tomb.save(tmp)
    full_manifest = {
        **manifest,
        "format_version": store.FORMAT_VERSION,
        "segments": list(segments),
        "counts": counts,
        "next_ids": {"chunk": int(next_ids[0]), "document": int(next_ids[1])},
        "dense": {**(manifest.get("dense") or {}), "kind": dense_kind(index_dir, segments)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": store.file_sizes(tmp),
    }
    store.write_manifest(tmp, full_manifest)
    # never switch to a generation that does not load and answer
    seconds = check_generation(tmp, full_manifest, full=full, vstore=vstore)["seconds"]
    say(store.CURRENT)
    store.publish(index_dir, tmp, name)
    return name, seconds


def plan_compaction(view: LiveView, max_segments: int, max_deleted_fraction: float) -> tuple[int, int] | None:
    """The run [start, end) of segments an automatic compaction merges, or None (module docstring)."""
    segs = view.segments
    total = sum(s.chunks for s in segs)
    if total and view.tomb.n_dead() / total > max_deleted_fraction:
        return 0, len(segs)
    if len(segs) <= max_segments:
        return None
    live = [s.chunks - view.tomb.n_dead(s.name) for s in segs]
    # at least enough of the newest segments to get back to max_segments ...
    start = max_segments - 1
    run = sum(live[start:])
    # ... and every older one that is no bigger than the run so far
    while start > 0 and live[start - 1] <= run:
        start -= 1
        run += live[start]
    return start, len(segs)


def compact_run(
    index_dir: Path, view: LiveView, start: int, end: int, exact_max: int, made: list[Path],
    on_write: Callable[[str], None] | None = None, vstore=None,
) -> tuple[str, float]:  # fmt: skip
    """Merge segments [start, end) of the live view into one and publish that generation.

    With the index's Qdrant collection (`vstore`) the live chunks' points stay as they are (same ids,
    same vectors) and the points of the chunks the merge drops (tombstoned, so already dead to the
    live generation) are deleted before the switch (gdn2_ingest.dense_qdrant)."""
    from gdn2_ingest.sparse import Postings

    run = view.segments[start:end]
    tmp = new_segment_dir(index_dir)
    made.append(tmp)
    db = DocStore(tmp / DOCSTORE)
    for s in run:
        db.copy_live_from(s.folder / DOCSTORE, view.tomb.dead_paths(s.name))
    ids, _ = db.ids_and_hashes()
    parts = [np.asarray(s.keyword.p.ids)[s.keyword.live] for s in run]
    want = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if not np.array_equal(ids, want):
        raise RuntimeError(
            f"compaction: the merged docstore holds {len(ids)} chunks, the segments {len(want)} live ones"
        )
    dim = int(view.manifest["embedder"]["dim"])
    postings = Postings.merge([(s.keyword.p, s.keyword.live) for s in run])
    if vstore is None:
        vecs = [s.dense.vectors(p) for s, p in zip(run, parts, strict=True) if len(p)]
        merged = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    else:
        vstore.delete(np.concatenate([s.dead_ids for s in run]))
        merged = None
    write_segment(tmp, db, merged, dim, exact_max, postings, on_write, store=vstore)
    name = seal_segment(tmp)
    made.append(tmp.parent / name)
    names = [s.name for s in view.segments]
    segments = names[:start] + [name] + names[end:]
    tomb = view.tomb.copy()
    for s in run:
        tomb.drop(s.name)
    return commit_generation(index_dir, view.manifest, segments, tomb, view.counts(), view.next_ids(),
                             full={name}, on_write=on_write, made=made, vstore=vstore,
                             dead_before=view.tomb)  # fmt: skip


def remove_paths(
    index_dir: str | os.PathLike, paths: list[str | os.PathLike], config: IngestConfig | None = None,
    notify: Callable[[str], None] | None = None,
) -> IngestReport:  # fmt: skip
    """Delete the files at or under `paths` from the index (they need not exist on disk any more).

    Writes a generation with their chunks tombstoned (no segment is rewritten; compaction drops them
    for good). Raises NotInIndexError naming a path that matches no file of the index, before writing.
    `config` gives lock_timeout, max_segments and max_deleted_fraction (IngestConfig() when None).
    """
    from gdn2_ingest.scan import under_roots

    cfg = (config or IngestConfig()).validate()
    t0 = time.perf_counter()
    index_dir = Path(index_dir).expanduser().absolute()
    store.require_generation(index_dir)
    report = IngestReport(index_dir=str(index_dir))
    with _locked(index_dir, cfg, notify) as (gen, vstore):
        with _building_on(index_dir, gen, vstore=vstore) as (view, made):
            roots = [Path(p).expanduser().absolute() for p in paths]
            gone = []
            for r in roots:
                mine = [p for p in view.files if under_roots(p, [r])]
                if not mine:
                    raise NotInIndexError(f"{r} is not in the index at {index_dir} (no file at or under it)")
                gone += mine
            gone = sorted(set(gone))
            tomb, counts = view.tomb.copy(), view.counts()
            report.chunks_removed = tombstone(view, tomb, counts, gone)
            report.files_deleted = sum(1 for p in gone if view.files[p][3] is None)
            names = [s.name for s in view.segments]
            report.generation, _ = commit_generation(index_dir, view.manifest, names, tomb, counts,
                                                     view.next_ids(), full=set(), made=made, vstore=vstore,
                                                     dead_before=view.tomb)  # fmt: skip
            report.chunks_total = counts["chunks"]
            report.changed = True
        auto_compact(index_dir, report, cfg.max_segments, cfg.max_deleted_fraction, _exact_max(view), vstore)
    report.seconds = time.perf_counter() - t0
    return report


@contextmanager
def _locked(index_dir: Path, cfg: IngestConfig, notify: Callable[[str], None] | None):
    """Under the index lock: the live generation and the index's Qdrant collection (None for FAISS),
    cleaned of what a killed writer left (gdn2_ingest.dense_qdrant.writer_store)."""
    from gdn2_ingest.dense_qdrant import resolve, writer_store

    with store.IndexLock(index_dir, cfg.lock_timeout, on_wait=notify):
        store.prune(index_dir)
        gen = store.require_generation(index_dir)
        manifest = store.read_manifest(gen)
        store_cfg = resolve(index_dir, manifest, cfg.vector_store)
        with writer_store(store_cfg, gen, manifest, int(manifest["embedder"]["dim"])) as vstore:
            yield gen, vstore


@contextmanager
def _building_on(
    index_dir: Path, gen: Path, check: bool = True, vstore=None
) -> Iterator[tuple[LiveView, list[Path]]]:
    """The live view a new generation is built on, and the list of folders written for it. A failure
    deletes those folders (the live generation stays what it was); the view is closed either way.
    `vstore`: the index's Qdrant collection (None for FAISS segments)."""
    view = LiveView.open(index_dir, gen, store.read_manifest(gen), check=check, vstore=vstore)
    made: list[Path] = []
    try:
        yield view, made
    except BaseException:
        view.close()
        discard(index_dir, made)
        raise
    view.close()


def auto_compact(index_dir: Path, report: IngestReport, max_segments: int, max_deleted_fraction: float,
                 exact_max: int, vstore=None) -> None:  # fmt: skip
    """Compact the live generation if `plan_compaction` says so (under the lock, after an update;
    `vstore`: the index's Qdrant collection, None for FAISS segments).

    The update is committed already: a compaction that does not fit on the disk is skipped (or given
    up when a write fails for want of space), which `report.disk["compaction_skipped"]` says; the
    next update tries again."""
    gen = store.require_generation(index_dir)
    try:
        with _building_on(index_dir, gen, check=False, vstore=vstore) as (view, made):
            plan = plan_compaction(view, max_segments, max_deleted_fraction)
            if plan is None:
                return
            # the merged segment is at most as big as the segments it replaces
            need = sum(store.tree_bytes(s.folder) for s in view.segments[plan[0] : plan[1]])
            free = store.free_bytes(index_dir)
            if free < need:
                report.disk["compaction_skipped"] = (
                    f"needs about {store.human(need)}, {store.human(free)} free"
                )
                return
            ts = time.perf_counter()
            report.generation, _ = compact_run(index_dir, view, *plan, exact_max, made, vstore=vstore)
            report.stage_seconds["compact"] = time.perf_counter() - ts
            report.compacted = plan[1] - plan[0]
    except BaseException as exc:
        if not store.is_disk_error(exc):
            raise
        report.disk["compaction_skipped"] = store.disk_reason(exc)


def _exact_max(view: LiveView) -> int:
    """The dense_exact_max the index was built with (its manifest is the owner once it exists)."""
    from gdn2_ingest.dense_qdrant import exact_max

    return exact_max(view.manifest)


def compact_index(index_dir: str | os.PathLike, config: IngestConfig | None = None,
                  notify: Callable[[str], None] | None = None) -> IngestReport:  # fmt: skip
    """Merge every segment of the index into one (tombstoned chunks are dropped for good); ids, and so
    search results, stay the same. A one-segment index without tombstones is left as it is.
    `config` gives lock_timeout (IngestConfig() when None)."""
    cfg = (config or IngestConfig()).validate()
    t0 = time.perf_counter()
    index_dir = Path(index_dir).expanduser().absolute()
    store.require_generation(index_dir)
    report = IngestReport(index_dir=str(index_dir))
    with (
        _locked(index_dir, cfg, notify) as (gen, vstore),
        _building_on(index_dir, gen, vstore=vstore) as (view, made),
    ):
        report.generation = gen.name
        report.chunks_total = view.counts()["chunks"]
        if len(view.segments) > 1 or view.tomb.n_dead():
            everything = (0, len(view.segments))
            report.generation, _ = compact_run(
                index_dir, view, *everything, _exact_max(view), made, vstore=vstore
            )
            report.compacted = len(view.segments)
            report.chunks_removed = view.tomb.n_dead()
            report.changed = True
    report.seconds = time.perf_counter() - t0
    return report
