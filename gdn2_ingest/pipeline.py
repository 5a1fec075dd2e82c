"""`ingest_paths`: files -> documents -> chunks -> vectors -> a new index generation.

Steps (all under the index lock):
  1. find the input files; stat each, hash those whose size or mtime changed; classify as
     new / changed / unchanged / deleted against the live generation (nothing changed: return early);
     other chunking settings re-chunk every file, another size limit or newer loaders retry the files
     skipped before;
  2. start a new segment (gdn2_ingest.segments) whose ids follow the live generation's, and
     tombstone the changed and deleted files in the segments that hold them;
  3. load and chunk new and changed files (bad files are skipped with one line each);
  4. embed the chunks whose (title-prefixed) text has no vector yet: vectors of unchanged chunk text
     are reused by content hash from the segment that holds them, identical texts are embedded once;
  5. write the new files' rows, their vectors and keyword postings into the segment, seal it, write
     the generation (previous segments + this one, tombstones, counts), verify the new segment fully
     (gdn2_ingest.index.check_generation), publish atomically and delete the previous generation
     unless a reader still holds it; compact automatically past a threshold
     (gdn2_ingest.segments_write.plan_compaction).

So an edit costs its own files' chunks, never a copy or rebuild of the rest of the index. Before step
2 the free disk space is checked against an estimate of the new segment's size (`estimate_bytes`); a
write that fails for want of space (or a file-size limit) removes the half-built segment and raises
DiskSpaceError. The live generation is checked too before it is built upon or reported ready: a
damaged one is an IndexBrokenError naming the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gdn2_ingest import dense_qdrant, store
from gdn2_ingest.chunking import ChunkDraft
from gdn2_ingest.config import IngestConfig, VectorStoreConfig
from gdn2_ingest.docstore import DocStore
from gdn2_ingest.embed import TokenCounter, build_embedder
from gdn2_ingest.engines import Engine, FileJob, open_engine
from gdn2_ingest.errors import DiskSpaceError
from gdn2_ingest.loaders import LOADERS_VERSION
from gdn2_ingest.progress import Feedback
from gdn2_ingest.scan import find_files, under_roots
from gdn2_ingest.segments import DOCSTORE, SEGMENTS_DIR, Tombstones, write_segment
from gdn2_ingest.segments_write import (
    LiveView,
    add_counts,
    auto_compact,
    commit_generation,
    discard,
    new_segment_dir,
    seal_segment,
    tombstone,
)
from gdn2_ingest.types import Document, IngestReport, SkippedFile
from gdn2_ingest.upgrade import upgrade_before_ingest

if TYPE_CHECKING:
    from gdn2_ingest.vectorstores.qdrant import QdrantStore


def _sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class _Todo:
    path: Path
    size: int
    mtime_ns: int
    data: bytes
    file_hash: str
    is_new: bool
    skip: str = ""  # reason, when the file cannot be ingested


def _unchanged(report: IngestReport, key: str, prev: tuple) -> None:
    """Count an unchanged file; one that was skipped before is reported again with its reason."""
    if prev[3]:
        report.skipped.append(SkippedFile(key, prev[3]))
    else:
        report.files_unchanged += 1


@dataclass
class _Loaded:
    todo: _Todo
    docs: list[tuple[Document, str, list[ChunkDraft]]]  # (document, domain, chunks)


def _man_renderer() -> str:
    """How man pages are rendered here (gdn2_ingest.loaders.man): groff at its line length, or the
    built-in roff parser when groff is missing. Part of the chunking settings: its text and line
    numbers differ, so another renderer re-chunks the man pages of an existing index."""
    from gdn2_ingest.loaders import man

    return f"groff-ll{man.LINE_LENGTH}" if man.GROFF else "builtin"


def _chunk_params(cfg: IngestConfig, max_tokens: int) -> dict:
    p = {"target_tokens": cfg.target_tokens, "overlap_tokens": cfg.overlap_tokens,
         "title_prefix": cfg.title_prefix, "max_tokens": max_tokens,
         # man pages rendered another way (the built-in parser before groff, another line length)
         # have other text and line numbers: an index built the old way re-chunks them
         "man_renderer": _man_renderer()}  # fmt: skip
    if cfg.record_text_fields is not None:
        # other record fields make other documents of the same files
        p["record_text_fields"] = list(cfg.record_text_fields)
    return p


# disk estimate of the next generation while it is built, measured with 384-dim vectors: a finished
# generation is 3.5-3.9x its input text (docstore with overlapping chunk text and indexes, BM25
# matrices, one float16 vector per 550-680 input bytes), and the SQLite WAL lifts the peak to
# 5.2-5.6x (2.2 MB of Python source: 12.4 MB peak; 3.1 MB of licenses: 16.1 MB). 5 bytes per input
# byte plus the vectors (2 * dim bytes per 500 input bytes) is 6.5x at 384 dims, plus a fixed margin.
DISK_BYTES_PER_INPUT_BYTE = 5.0
DISK_INPUT_BYTES_PER_CHUNK = 500
DISK_MARGIN = 4_000_000


def estimate_bytes(live_bytes: int, new_input_bytes: int, dim: int) -> int:
    """Bytes a writer needs on disk: what it copies of the live index (`live_bytes`: 0 for an ingest,
    which writes a segment of its own files only; the merged segments for a compaction) plus what the
    new and changed files add."""
    per_byte = DISK_BYTES_PER_INPUT_BYTE + 2 * dim / DISK_INPUT_BYTES_PER_CHUNK
    return int(live_bytes + new_input_bytes * per_byte + DISK_MARGIN)


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _skip_params(cfg: IngestConfig) -> dict:
    """What decided that a file was skipped: when it changes, skipped files are tried again."""
    return {"max_file_bytes": cfg.max_file_bytes, "max_expanded_bytes": cfg.max_expanded_bytes,
            "loaders": LOADERS_VERSION}  # fmt: skip


def ingest_paths(
    index_dir: str | os.PathLike, paths: list[str | os.PathLike], config: IngestConfig | None = None,
    progress: bool = True, notify: Callable[[str], None] | None = None,
) -> IngestReport:  # fmt: skip
    """Ingest files and folders into the index at `index_dir` (created if missing).

    Args:
        index_dir: the index folder.
        paths: files or folders; a missing one raises MissingPathError before anything is written.
        config: chunking, embedding and store settings (IngestConfig() when None).
        progress: show progress bars, one line per skipped file and the closing summary on stderr.
        notify: called with one-line notices (waiting for another ingest's lock); None prints them
            on stderr when `progress` is on.

    Returns:
        IngestReport with counts, skipped files with reasons, per-stage seconds; `report.disk` holds
        the disk estimate, the free space and the new generation's size in bytes.

    Raises:
        IngestError subclasses for what a user can fix: MissingPathError, IndexPathError (the index
        path is a file), IndexLockedError, IndexBrokenError (the live generation is damaged),
        DiskSpaceError (too little free space, or a write failed for want of it), EmbedderMismatchError.
        The live generation is unchanged after any error or interruption.
    """
    cfg = (config or IngestConfig()).validate()
    t0 = time.perf_counter()
    index_dir = Path(index_dir).expanduser().absolute()
    found = find_files(paths, exclude=[index_dir, *dense_qdrant.own_folders(index_dir, cfg.vector_store)])
    report = IngestReport(index_dir=str(index_dir), files_seen=len(found.files) + len(found.broken))
    report.skipped += [SkippedFile(str(p), "broken symlink (missing target or a loop)") for p in found.broken]
    report.skipped += [SkippedFile(str(p), f"unreadable folder: {why}") for p, why in found.unreadable]
    for alias, orig in found.duplicates:
        report.duplicates.append(SkippedFile(str(alias), f"same file as {orig}"))
    fb = Feedback(progress)
    if notify is None and progress:
        notify = _stderr_line
    report.disk = {}  # reported by to_dict(): estimate_bytes, free_bytes, generation_bytes, ...
    store.ensure_index_dir(index_dir)
    with store.IndexLock(index_dir, cfg.lock_timeout, on_wait=notify), ExitStack() as stack:
        store.prune(index_dir)
        embedder = build_embedder(cfg.model_path, cfg.device, cfg.batch_size, cfg.embedder_factory, cfg.dtype)
        identity = embedder.identity()
        params = _chunk_params(cfg, embedder.max_tokens)
        # an index of the previous release's format becomes the current one first (no re-embedding)
        upgraded = upgrade_before_ingest(index_dir, identity, notify)
        if upgraded is not None:
            report.stage_seconds["upgrade"] = upgraded.seconds
        live = store.current_generation(index_dir)
        manifest = store.read_manifest(live) if live is not None else None
        if manifest is not None:
            store.check_embedder(index_dir, manifest, identity)
        # where the vectors go: the index's recorded store, or the config's for a new index
        store_cfg = dense_qdrant.resolve(index_dir, manifest, cfg.vector_store)
        vstore = stack.enter_context(
            dense_qdrant.writer_store(store_cfg, live, manifest, int(identity["dim"]))
        )
        settings = _settings(cfg, identity, params, store_cfg)
        if live is None and vstore is not None:
            # a new Qdrant index records its collection in an empty generation before it writes a point
            # into it: a killed first ingest leaves an index that owns the collection
            empty = {"files": 0, "documents": 0, "chunks": 0, "per_domain": {}}
            commit_generation(index_dir, settings, [], Tombstones(), empty, (1, 1), full=set(), vstore=vstore)
            live = store.current_generation(index_dir)
            manifest = store.read_manifest(live)
        # a damaged live generation is neither built upon nor reported ready
        view = LiveView.open(index_dir, live, manifest, vstore=vstore)
        old_files = dict(view.files)
        if manifest is not None:
            if manifest.get("chunking") != params:
                # other chunk sizes: every file is re-chunked (vectors still reused where text matches)
                old_files = {p: (-1, -1, "", v[3]) for p, v in old_files.items()}
            elif manifest.get("skips") != _skip_params(cfg):
                # another size limit or newer loaders: files skipped before are tried again
                old_files = {p: (-1, -1, "", v[3]) if v[3] else v for p, v in old_files.items()}

        # 1. classify files
        ts = time.perf_counter()
        todo: list[_Todo] = []
        skips: list[_Todo] = []  # bad files, remembered so an unchanged one is not re-read next time
        present: set[str] = set()
        with fb.bar("scanning", len(found.files)) as adv:
            for f in found.files:
                adv()
                key = str(f)
                present.add(key)
                prev = old_files.get(key)
                try:
                    st = f.stat()
                except OSError as exc:
                    report.skipped.append(SkippedFile(key, f"unreadable ({exc.strerror or exc})"))
                    continue
                if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns:
                    _unchanged(report, key, prev)
                    continue
                if st.st_size > cfg.max_file_bytes:
                    reason = (
                        f"oversized ({st.st_size} bytes > max_file_bytes={cfg.max_file_bytes};"
                        " raise it with --max-file-mb)"
                    )
                    skips.append(_Todo(f, st.st_size, st.st_mtime_ns, b"", "", prev is None, reason))
                    continue
                try:
                    data = f.read_bytes()
                except OSError as exc:
                    report.skipped.append(SkippedFile(key, f"unreadable ({exc.strerror or exc})"))
                    continue
                h = _sha(data)
                if prev and prev[2] == h:
                    _unchanged(report, key, prev)
                    continue
                todo.append(_Todo(f, st.st_size, st.st_mtime_ns, data, h, prev is None))
        deleted = [p for p in old_files if p not in present and under_roots(p, found.roots)]
        report.files_deleted = sum(1 for p in deleted if old_files[p][3] is None)
        report.stage_seconds["scan"] = time.perf_counter() - ts
        # nothing changed (a first ingest of an empty folder still creates an empty index)
        if not todo and not deleted and not skips and live is not None:
            report.chunks_total = view.counts()["chunks"]
            view.close()
            report.generation = live.name
            report.disk = {
                "generation_bytes": _live_bytes(index_dir, live, manifest),
                "free_bytes": store.free_bytes(index_dir),
            }
            report.seconds = time.perf_counter() - t0
            fb.finish(report)
            return report

        # the new segment must fit next to the live generation
        live_bytes = _live_bytes(index_dir, live, manifest)
        need = estimate_bytes(0, sum(t.size for t in todo), int(identity["dim"]))
        free = store.free_bytes(index_dir)
        report.disk = {"estimate_bytes": need, "free_bytes": free, "previous_generation_bytes": live_bytes}
        if free < need:
            view.close()
            raise DiskSpaceError(
                f"not enough disk space for the index at {index_dir}: this ingest needs about"
                f" {store.human(need)} for the new generation, {store.human(free)} are free;"
                " free some space or use an --index folder on another disk"
            )
        made: list[Path] = []
        engine = open_engine(cfg, embedder, TokenCounter(embedder.load_tokenizer()))
        try:
            _build(index_dir, view, made, todo, skips, deleted, cfg, engine, identity, settings, report, fb,
                   vstore)  # fmt: skip
            auto_compact(index_dir, report, cfg.max_segments, cfg.max_deleted_fraction, cfg.dense_exact_max,
                         vstore)  # fmt: skip
        except BaseException as exc:
            view.close()
            discard(index_dir, made)
            if store.is_disk_error(exc):
                writing = report.disk.get("writing", "?")
                kept = f"generation {live.name} is unchanged" if live is not None else "no index was created"
                raise DiskSpaceError(
                    f"cannot write {writing} of the new index generation in {index_dir}:"
                    f" {store.disk_reason(exc)}; this ingest needs about {store.human(need)} there,"
                    f" {store.human(store.free_bytes(index_dir))} free; {kept}"
                ) from exc
            raise
        finally:
            view.close()
            engine.close()
            report.disk.pop("writing", None)
    report.seconds = time.perf_counter() - t0
    fb.finish(report)
    return report


def _settings(cfg: IngestConfig, identity: dict, params: dict, store_cfg: VectorStoreConfig) -> dict:
    """The settings part of a new generation's manifest (gdn2_ingest.segments_write.commit_generation
    adds segments, counts and ids). `store_cfg`: the index's vector store (dense_qdrant.resolve);
    FAISS records none, so FAISS manifests are as they were."""
    out = {
        "embedder": identity,
        "chunking": params,
        "skips": _skip_params(cfg),
        "dense": {"exact_max": cfg.dense_exact_max},
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("embedder_factory", "vector_store")},
    }
    if store_cfg.to_record() is not None:
        out["vector_store"] = store_cfg.to_record()
    return out


def _live_bytes(index_dir: Path, live: Path | None, manifest: dict | None) -> int:
    if live is None:
        return 0
    segs = [index_dir / SEGMENTS_DIR / n for n in manifest.get("segments") or []]
    return store.tree_bytes(live) + sum(store.tree_bytes(p) for p in segs)


def _build(
    index_dir: Path, view: LiveView, made: list[Path], todo: list[_Todo], skips: list[_Todo],
    deleted: list[str], cfg: IngestConfig, engine: Engine, identity: dict, settings: dict,
    report: IngestReport, fb: Feedback, vstore: QdrantStore | None,
) -> None:  # fmt: skip
    """Steps 2-5: write the new segment, then the generation naming it, verify and publish it.
    `settings`: the manifest's settings (`_settings`); `vstore`: the index's Qdrant collection (the new
    segment's vectors go there), None for FAISS."""
    # 2. a new segment numbering its ids after the live generation's; the replaced files tombstoned
    report.disk["writing"] = DOCSTORE
    tmp = new_segment_dir(index_dir)
    made.append(tmp)
    db = DocStore(tmp / DOCSTORE)
    db.start_ids(*view.next_ids())
    gone = [str(t.path) for t in todo + skips if not t.is_new] + deleted
    # vectors of the live generation, looked up by embed hash (for unchanged chunk texts)
    reuse = view.reusable(gone)
    tomb, counts = view.tomb.copy(), view.counts()
    report.chunks_removed += tombstone(view, tomb, counts, gone)
    # 3. load and chunk
    ts = time.perf_counter()
    loaded: list[_Loaded] = []
    # the engine returns one result per file in `todo` order: ids are assigned as a local ingest does
    with fb.bar("loading + chunking", len(todo)) as adv:
        jobs = [FileJob(str(t.path), t.data) for t in todo]
        for t in todo:
            t.data = b""
        results = engine.load_chunk(jobs, adv)
        del jobs
    for t, r in zip(todo, results, strict=True):
        if r.skip:
            t.skip = r.skip
            skips.append(t)
            continue
        loaded.append(_Loaded(t, r.docs))
        report.code_fallbacks += r.fallbacks
        if t.is_new:
            report.files_new += 1
        else:
            report.files_changed += 1
    del results
    for t in skips:
        report.skipped.append(SkippedFile(str(t.path), t.skip))
        db.upsert_file(str(t.path), t.size, t.mtime_ns, t.file_hash, "", 0, t.skip)
    report.stage_seconds["load+chunk"] = time.perf_counter() - ts

    # 4. embed what has no vector yet
    ts = time.perf_counter()
    need: dict[str, str] = {}
    for lf in loaded:
        for _, _, drafts in lf.docs:
            for c in drafts:
                eh = _sha(c.embed_text)
                if eh not in reuse and eh not in need:
                    need[eh] = c.embed_text
    vectors = view.vectors({h: reuse[h] for h in {_sha(c.embed_text) for lf in loaded
                            for _, _, drafts in lf.docs for c in drafts} if h in reuse})  # fmt: skip
    if need:
        keys = sorted(need, key=lambda k: len(need[k]))
        step = max(cfg.batch_size * 4, 64)
        parts = [keys[i : i + step] for i in range(0, len(keys), step)]
        with fb.bar("embedding", len(keys)) as adv:
            for b, vecs in engine.embed([[need[k] for k in part] for part in parts]):
                part = parts[b]
                if vecs.shape != (len(part), identity["dim"]):
                    raise RuntimeError(
                        f"embedder returned shape {vecs.shape}, expected ({len(part)}, {identity['dim']})"
                    )
                for k, v in zip(part, vecs, strict=True):
                    vectors[k] = np.asarray(v, dtype=np.float32)
                adv(len(part))
    report.chunks_embedded = len(need)
    report.stage_seconds["embed"] = time.perf_counter() - ts

    # 5. write, derive the indexes, publish
    ts = time.perf_counter()
    for lf in loaded:
        t = lf.todo
        domains = set()
        for d, dom, drafts in lf.docs:
            domains.add(dom)
            doc_hash = _sha(d.text)
            doc_id = db.add_document(str(t.path), d.sub, d.title, dom, d.fmt, doc_hash, len(drafts))
            rows = [
                (doc_id, i, str(t.path), d.sub, dom, d.title, c.section, c.text, c.start, c.end,
                 c.line_start, c.line_end, c.page, _sha(c.text), doc_hash, c.tokens,
                 _sha(c.embed_text))
                for i, c in enumerate(drafts)
            ]  # fmt: skip
            db.add_chunks(rows)
            report.chunks_added += len(rows)
            report.documents += 1
        db.upsert_file(str(t.path), t.size, t.mtime_ns, t.file_hash, ",".join(sorted(domains)), len(lf.docs))
    db.commit()
    next_ids = db.next_ids()
    new_ids, new_hashes = db.ids_and_hashes()
    dim = identity["dim"]
    vecs = np.stack([vectors[h] for h in new_hashes]) if new_hashes else np.zeros((0, dim), np.float32)

    def writing(name: str) -> None:
        report.disk["writing"] = name

    names = [s.name for s in view.segments]
    full: set[str] = set()
    if len(new_ids) or loaded or skips:
        info = write_segment(tmp, db, vecs, dim, cfg.dense_exact_max, on_write=writing, store=vstore)
        add_counts(counts, info)
        name = seal_segment(tmp)
        made.append(tmp.parent / name)
        names.append(name)
        full.add(name)
        report.disk["segment_bytes"] = store.tree_bytes(tmp.parent / name)
    else:
        # only deletions: the generation's tombstones are the whole change
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
    report.chunks_total = counts["chunks"]
    report.stage_seconds["store"] = time.perf_counter() - ts
    name, report.stage_seconds["verify"] = commit_generation(
        index_dir, settings, names, tomb, counts, next_ids, full,
        on_write=writing, made=made, vstore=vstore, dead_before=view.tomb,
    )  # fmt: skip
    report.disk["generation_bytes"] = _live_bytes(index_dir, index_dir / name, {"segments": names})
    report.disk["previous_generation_kept"] = view.gen is not None and view.gen.exists()
    report.generation = name
    report.changed = True
