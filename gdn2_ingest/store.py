"""The index folder: immutable generations, an atomically switched CURRENT pointer, a manifest, a lock.

    INDEX/
      CURRENT              name of the live generation (replaced with os.replace: all or nothing)
      lock                 flock'ed by the one writer; a second ingest waits, then fails clearly
      gen-000007/          manifest.json, docstore.sqlite, dense.faiss, bm25/ (never modified)
      gen-000008.tmp-PID/  the next generation while it is being built

An ingest copies the live docstore into a temp folder, applies its changes there, derives FAISS and
BM25 from it, fsyncs, renames the folder and only then switches CURRENT. Killed at any moment, it
leaves CURRENT on the previous, complete generation; the next run removes the leftovers. The
previous generation is kept for readers that opened it before the switch.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from gdn2_ingest.errors import EmbedderMismatchError, IndexFormatError, IndexLockedError, IndexNotFoundError

FORMAT_VERSION = 2
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
DOCSTORE = "docstore.sqlite"
DENSE = "dense.faiss"
BM25_DIR = "bm25"


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder, or None when the index has none yet."""
    p = index_dir / CURRENT
    if not p.is_file():
        return None
    name = p.read_text().strip()
    gen = index_dir / name
    if not name or not (gen / MANIFEST).is_file():
        raise IndexFormatError(f"{index_dir}: CURRENT points at missing generation {name!r}")
    return gen


def require_generation(index_dir: Path) -> Path:
    if not index_dir.is_dir():
        raise IndexNotFoundError(f"no index at {index_dir} (run `rag ingest DIR --index {index_dir}` first)")
    gen = current_generation(index_dir)
    if gen is None:
        raise IndexNotFoundError(f"{index_dir} holds no finished index (run `rag ingest` into it)")
    return gen


def read_manifest(gen: Path) -> dict:
    try:
        m = json.loads((gen / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"unreadable manifest in {gen}: {exc}") from exc
    if m.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{gen.parent} has index format {m.get('format_version')}, this version reads {FORMAT_VERSION};"
            " re-ingest into a new --index folder"
        )
    return m


def check_embedder(index_dir: Path, manifest: dict, identity: dict) -> None:
    """Raise EmbedderMismatchError unless `identity` is the embedder the index was built with."""
    built = manifest["embedder"]
    if built.get("fingerprint") != identity.get("fingerprint") or built.get("dim") != identity.get("dim"):
        raise EmbedderMismatchError(
            f"index {index_dir} was built with embedder {built.get('name')} (dim {built.get('dim')}),"
            f" not {identity.get('name')} (dim {identity.get('dim')});"
            " use the same model or a new --index folder"
        )


def write_manifest(gen: Path, manifest: dict) -> None:
    (gen / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(d: Path) -> None:
    fd = os.open(str(d), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_generation_name(index_dir: Path) -> str:
    nums = [int(p.name[4:10]) for p in index_dir.glob("gen-[0-9]*") if p.name[4:10].isdigit()]
    return f"gen-{max(nums, default=0) + 1:06d}"


def publish(index_dir: Path, tmp: Path, name: str) -> Path:
    """Make `tmp` the live generation `name`: fsync, rename, switch CURRENT atomically, prune."""
    _fsync_tree(tmp)
    final = index_dir / name
    os.replace(tmp, final)
    _fsync_dir(index_dir)
    ptr = index_dir / (CURRENT + ".tmp")
    with open(ptr, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(ptr, index_dir / CURRENT)
    _fsync_dir(index_dir)
    prune(index_dir, keep=2)
    return final


def prune(index_dir: Path, keep: int = 2) -> None:
    """Delete temp folders of dead runs and all but the newest `keep` generations (call under the lock)."""
    live = (index_dir / CURRENT).read_text().strip() if (index_dir / CURRENT).is_file() else ""
    for p in index_dir.glob("gen-*.tmp*"):
        shutil.rmtree(p, ignore_errors=True)
    gens = sorted(p for p in index_dir.glob("gen-[0-9][0-9][0-9][0-9][0-9][0-9]") if p.is_dir())
    for p in gens[:-keep]:
        if p.name != live:
            shutil.rmtree(p, ignore_errors=True)


class IndexLock:
    """Exclusive writer lock on INDEX/lock (flock: released by the kernel if the holder dies)."""

    def __init__(self, index_dir: Path, timeout: float) -> None:
        self.path = index_dir / "lock"
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> IndexLock:
        self.fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(self.fd)
                    self.fd = None
                    raise IndexLockedError(
                        f"another ingest (pid {holder}) is writing {self.path.parent};"
                        f" waited {self.timeout:.0f}s"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
