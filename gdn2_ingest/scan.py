"""Input discovery: the files under the given paths, in a stable order, without duplicates."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gdn2_ingest.errors import MissingPathError

# folders that never hold documents a user means to index
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox", ".mypy_cache",
             ".pytest_cache", ".ruff_cache", ".idea", ".rag"}  # fmt: skip


@dataclass
class Found:
    files: list[Path]  # absolute, sorted, first of each set of aliases
    roots: list[Path]  # absolute input paths (deletions are detected under these)
    duplicates: list[tuple[Path, Path]]  # (alias, the file it duplicates)
    broken: list[Path]  # symlinks that lead nowhere (missing target or a loop)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folders os.walk could not list, why


def find_files(paths: list[str | os.PathLike], exclude: Path | list[Path] | None = None) -> Found:
    """Files under `paths` (recursively); symlinks to a file already found are reported as duplicates,
    symlinks to nothing as broken. Symlinked folders inside a root are not followed; the folders in
    `exclude` (the index's own, an embedded Qdrant's) are not entered."""
    roots: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise MissingPathError(f"path not found: {p}")
        roots.append(path.absolute())
    seen: dict[str, Path] = {}
    files: list[Path] = []
    dups: list[tuple[Path, Path]] = []
    broken: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    excl = {
        p.resolve() for p in ([] if exclude is None else [exclude] if isinstance(exclude, Path) else exclude)
    }

    def add(f: Path) -> None:
        real = os.path.realpath(f)
        if real in seen:
            kept = seen[real]
            if kept == f:
                return
            # keep the real file and report the symlink as the alias
            if kept.is_symlink() and not f.is_symlink():
                files[files.index(kept)] = f
                seen[real] = f
                f, kept = kept, f
            dups.append((f, kept))
            return
        seen[real] = f
        files.append(f)

    for root in roots:
        if root.is_file():
            add(root)
            continue

        # a folder that cannot be listed (permissions) is reported, never skipped in silence
        def on_error(err: OSError) -> None:
            unreadable.append((Path(err.filename), err.strerror or type(err).__name__))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=on_error):
            d = Path(dirpath)
            dirnames[:] = sorted(
                n for n in dirnames if n not in SKIP_DIRS and not (excl and (d / n).resolve() in excl)
            )
            for n in sorted(filenames):
                f = d / n
                if f.is_file():
                    add(f)
                elif f.is_symlink() and not f.exists():
                    broken.append(f)
    return Found(files=files, roots=roots, duplicates=dups, broken=broken, unreadable=unreadable)


def display_path(path: str | os.PathLike) -> str:
    """A path as users should see it (citations, skip lines, JSON, reader headers): undecodable bytes
    of a non-UTF-8 file name written as '\\xe9' escapes ('caf\\xe9.txt'); UTF-8 names unchanged.

    The in-memory path (Chunk.path, SkippedFile.path) keeps the surrogate-escaped str so the file
    can still be opened; only printing and tokenizing need this form."""
    from gdn2_ingest.loaders.base import escape_surrogates

    return escape_surrogates(os.fspath(path))


def under_roots(path: str, roots: list[Path]) -> bool:
    p = Path(path)
    return any(p == r or r in p.parents for r in roots)
