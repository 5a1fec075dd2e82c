"""Metadata filters applied to retrieved chunks: domain and path glob."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

DOMAINS = ("legal", "support", "code")


@dataclass(frozen=True)
class MetadataFilter:
    """Keep chunks whose domain is `domain` and whose path matches `path_glob` (fnmatch syntax).

    A glob without a slash matches the file name as well as the whole path, so `*.py` finds
    `src/a/b.py` the way users expect; a relative glob with a slash matches the path's tail, so
    `corpus/*.py` (or `./corpus/*.py`) finds `/home/me/corpus/a.py` (the index stores absolute paths).
    """

    domain: str | None = None
    path_glob: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None and self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r}; expected one of {', '.join(DOMAINS)}")
        if self.path_glob is not None and not self.path_glob.strip():
            raise ValueError("path_glob must not be empty")

    @property
    def active(self) -> bool:
        return self.domain is not None or self.path_glob is not None

    def matches(self, chunk) -> bool:
        """True when `chunk` (anything with `.domain` and `.path`) passes every set filter."""
        if self.domain is not None and chunk.domain != self.domain:
            return False
        return self.matches_path(str(chunk.path))

    def matches_path(self, path: str) -> bool:
        """True when a file at `path` passes the path glob (always, without one)."""
        if self.path_glob is None:
            return True
        if fnmatch.fnmatchcase(path, self.path_glob):
            return True
        if "/" not in self.path_glob:
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], self.path_glob)
        if not self.path_glob.startswith("/"):
            tail = self.path_glob.removeprefix("./")
            return fnmatch.fnmatchcase(path, "*/" + tail)
        return False
