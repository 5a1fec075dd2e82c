"""The index folder: immutable segments, generations that list them, an atomically switched CURRENT.

    INDEX/
      CURRENT              name of the live generation (replaced with os.replace: all or nothing)
      lock                 flock'ed by the one writer, holds its PID; a second writer says it waits
                           for that PID, then fails clearly
      segments/seg-000004/ docstore rows, vectors, keyword postings of one ingest (gdn2_ingest.segments;
                           never modified)
      gen-000007/          manifest.json (the segments, in id order; counts; settings) and
                           tombstones.json (the files and chunks of those segments that are deleted)
      gen-000008.tmp-PID/  the next generation while it is being written

An ingest writes one new segment holding only the new and changed files (segments/seg-N.tmp-PID,
fsynced, then renamed), then a new generation: the previous one's segments plus the new one, and
the previous tombstones plus those of the replaced and deleted files. It verifies the new segment
(gdn2_ingest.segments.check_segment), fsyncs, renames the generation folder and only then switches
CURRENT. Compaction (gdn2_ingest.compact) writes a merged segment and a generation naming it instead
of the segments it merged. Killed or failing at any moment, a writer leaves CURRENT on the previous,
complete generation, whose segments it never touched; the next writer removes the leftovers. After
the switch every generation but the live one is deleted unless a reader still holds it (`Index.open`
takes a shared flock on its generation's manifest.json; pruning skips any generation whose manifest it
cannot lock exclusively), then every segment that no remaining generation names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gdn2_ingest.errors import (
    EmbedderMismatchError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    IndexPathError,
    IndexUpgradeNeededError,
)

FORMAT_VERSION = 3
# earlier formats gdn2_ingest.upgrade converts in place (`rag upgrade`, or the next ingest)
UPGRADABLE_FORMATS = (2,)
CURRENT = "CURRENT"
MANIFEST = "manifest.json"


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
    if m.get("format_version") in UPGRADABLE_FORMATS:
        raise IndexUpgradeNeededError(
            f"{gen.parent} has index format {m.get('format_version')}, this version reads {FORMAT_VERSION};"
            f" run `rag upgrade --index {gen.parent}` (no re-embedding)"
        )
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


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(d: Path) -> None:
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
    fsync_tree(tmp)
    final = index_dir / name
    os.replace(tmp, final)
    fsync_dir(index_dir)
    ptr = index_dir / (CURRENT + ".tmp")
    with open(ptr, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(ptr, index_dir / CURRENT)
    fsync_dir(index_dir)
    prune(index_dir)
    return final


def prune(index_dir: Path) -> list[str]:
    """Delete temp folders of dead runs, every generation but the live one that no reader holds, then
    every segment no remaining generation names (call under the writer lock). Returns the names of
    the generations kept for readers."""
    live = (index_dir / CURRENT).read_text().strip() if (index_dir / CURRENT).is_file() else ""
    for p in index_dir.glob("gen-*.tmp*"):
        shutil.rmtree(p, ignore_errors=True)
    held = []
    for p in sorted(index_dir.glob("gen-[0-9][0-9][0-9][0-9][0-9][0-9]")):
        if p.name == live or not p.is_dir():
            continue
        try:
            f = open(p / MANIFEST, "rb")  # noqa: SIM115 - held while the folder is deleted
        except OSError:
            shutil.rmtree(p, ignore_errors=True)  # no manifest: a half-deleted folder, nobody reads it
            continue
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(p.name)  # an open Index reads it; a later ingest deletes it
                continue
            shutil.rmtree(p, ignore_errors=True)
    _prune_segments(index_dir, live, held)
    return held


def _prune_segments(index_dir: Path, live: str, held: list[str]) -> None:
    from gdn2_ingest.segments import prune_segments

    referenced: set[str] = set()
    for name in [live, *held]:
        if not name:
            continue
        try:
            referenced |= set(json.loads((index_dir / name / MANIFEST).read_text()).get("segments") or [])
        except (OSError, ValueError):
            return  # a generation we cannot read: delete no segment rather than one it may name
    prune_segments(index_dir, referenced)


def hold_generation(index_dir: Path) -> tuple[Path, IO[bytes]]:
    """The live generation and an open file holding a shared flock on its manifest, so that no ingest
    deletes it while it is read. Retries when an ingest switches CURRENT (or prunes) meanwhile."""
    for _ in range(50):
        gen = require_generation(index_dir)
        try:
            f = open(gen / MANIFEST, "rb")  # noqa: SIM115 - kept open by the Index
        except FileNotFoundError:
            continue  # pruned between reading CURRENT and opening
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()  # an ingest is deleting this generation: CURRENT has moved on
            time.sleep(0.01)
            continue
        except OSError:
            return gen, f  # no flock on this file system: read without the guard
        if current_generation(index_dir) == gen and (gen / MANIFEST).exists():
            return gen, f
        f.close()
    raise IndexFormatError(f"{index_dir}: CURRENT keeps changing; is an ingest looping?")


def ensure_index_dir(index_dir: Path) -> None:
    """Create the index folder; IndexPathError when it is a file or cannot be created."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexPathError(
            f"index path {index_dir} is a file, not an index folder; pass a folder to --index"
        )
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexPathError(f"cannot create the index folder {index_dir}: {exc.strerror or exc}") from exc


# disk space ------------------------------------------------------------------------------------------

DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}


def is_disk_error(exc: BaseException) -> bool:
    """A write failed for want of space, a file-size limit, a quota or a read-only/failing disk."""
    if isinstance(exc, OSError):
        # numpy's tofile reports a short write as "N requested and M written", without an errno
        return exc.errno in DISK_ERRNOS or (exc.errno is None and " written" in str(exc))
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        msg = str(exc).lower()
        return "disk" in msg or "full" in msg or "readonly" in msg or "i/o" in msg
    return False


def disk_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.EFBIG:
            return "file too large (a file-size limit was reached)"
        if exc.errno == errno.ENOSPC:
            return "no space left on device"
        if exc.errno is None:
            return f"short write, {exc} (the disk is full or a file-size limit was reached)"
        return exc.strerror or str(exc)
    msg = " ".join(str(exc).split())
    if "i/o" in msg.lower():  # SQLite reports EFBIG and EIO alike
        return f"{msg} (the disk is full or failing, or a file-size limit was reached)"
    return "no space left on device" if "full" in msg.lower() else msg


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


def free_bytes(index_dir: Path) -> int:
    return shutil.disk_usage(index_dir).free


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def file_sizes(folder: Path, leave_out: str = MANIFEST) -> dict[str, int]:
    """Size of every file under `folder` but `leave_out` (a generation's or a segment's manifest), by path
    relative to it."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            rel = p.relative_to(folder).as_posix()
            if rel != leave_out:
                out[rel] = p.stat().st_size
    return dict(sorted(out.items()))


class IndexLock:
    """Exclusive writer lock on INDEX/lock (flock: released by the kernel if the holder dies)."""

    def __init__(
        self, index_dir: Path, timeout: float, on_wait: Callable[[str], None] | None = None
    ) -> None:  # fmt: skip
        self.path = index_dir / "lock"
        self.timeout = timeout
        self.on_wait = on_wait  # called once with a one-line message when the lock is busy
        self.fd: int | None = None

    def holder(self) -> str:
        """PID recorded by the holder ('?' when it has not written it yet)."""
        for _ in range(10):
            pid = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            if pid:
                return pid
            time.sleep(0.05)  # the holder truncates, then writes its PID
        return "?"

    def __enter__(self) -> IndexLock:
        try:
            self.fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IndexPathError(
                f"cannot write the index folder {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait is not None and self.timeout > 0:
                    told = True
                    self.on_wait(
                        f"waiting for the index lock on {self.path.parent}, held by PID {self.holder()}"
                        f" (another ingest); giving up after {self.timeout:.0f}s"
                    )
                if time.monotonic() >= deadline:
                    holder = self.holder()
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
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)  # no stale PID for the next waiter to name
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
