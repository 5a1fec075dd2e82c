"""The vector-store interface shared by the backends, and the filter they all understand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

STORES = ("faiss", "qdrant")

# a search result: (chunk id, score) best first, one list per query
Hits = list[list[tuple[int, float]]]


@dataclass(frozen=True)
class Where:
    """Which chunks a search may return; None means any.

    domain: legal | support | code.
    path: a file path (that file's chunks) or a folder (the chunks of every file under it).
    any_paths: files or folders: the chunks at or under any of them (an empty tuple admits none).
    """

    domain: str | None = None
    path: str | None = None
    any_paths: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        return self.domain is not None or self.path is not None or self.any_paths is not None

    def folder(self) -> str | None:
        """`path` without a trailing slash ("/" stays "/")."""
        if self.path is None:
            return None
        return self.path.rstrip("/") or "/"


def path_keys(path: str) -> list[str]:
    """The path and every folder above it: what a `Where.path` filter may name to match `path`.

    "/a/b/c.txt" -> ["/a/b/c.txt", "/a/b", "/a", "/"]; a relative "a/b.txt" -> ["a/b.txt", "a"]."""
    keys = [path]
    head = path
    while "/" in head:
        head = head.rsplit("/", 1)[0]
        keys.append(head or "/")
        if not head:
            break
    return keys


class VectorStore(Protocol):
    """A store of (id, vector, domain, path) rows searched by inner product.

    `add` replaces the rows of ids it already holds (an upsert), `delete` ignores unknown ids, and
    `search` returns at most k hits per query, best first, only rows that `where` admits."""

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray, domains: list[str], paths: list[str]) -> None: ...

    def delete(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int, where: Where | None = None) -> Hits: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def check_rows(dim: int, ids: np.ndarray, vectors: np.ndarray, domains: list[str], paths: list[str]) -> None:
    """Raise ValueError when the rows of an `add` do not line up or have the wrong width."""
    n = len(ids)
    if vectors.ndim != 2 or vectors.shape != (n, dim):
        raise ValueError(f"vectors have shape {vectors.shape}, expected ({n}, {dim})")
    if len(domains) != n or len(paths) != n:
        raise ValueError(f"{n} ids but {len(domains)} domains and {len(paths)} paths")
    if n and int(np.min(ids)) < 0:
        raise ValueError("ids must be >= 0")
    if len(np.unique(ids)) != n:
        raise ValueError("ids of one add must be distinct")


def open_store(kind: str, dim: int, **options) -> VectorStore:
    """The backend `kind` names ("faiss" or "qdrant"); `options` go to its constructor."""
    if kind == "faiss":
        from gdn2_ingest.vectorstores.faiss import FaissStore

        return FaissStore(dim, **options)
    if kind == "qdrant":
        from gdn2_ingest.vectorstores.qdrant import QdrantStore

        return QdrantStore(dim, **options)
    raise ValueError(f"vector store {kind!r} must be one of {', '.join(STORES)}")
