"""SQLite docstore: files, documents, chunks (text, anchors, embed hash) of one index generation.

The chunk table is the source of truth for which chunk ids exist: each generation's FAISS index
holds exactly these ids (vectors carried over from the previous generation's FAISS index by id)
and its BM25 index is rebuilt from these texts, so an incremental run can never leave deleted text
in one store but not another. The database is written in WAL mode while the (single, locked) writer
builds it, then checkpointed into one self-contained file that readers open read-only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from gdn2_ingest.types import Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, file_hash TEXT, domain TEXT, n_docs INTEGER,
    skipped TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, sub TEXT NOT NULL, title TEXT,
    domain TEXT, fmt TEXT, doc_hash TEXT, n_chunks INTEGER
);
CREATE INDEX IF NOT EXISTS documents_path ON documents(path);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id INTEGER NOT NULL, ordinal INTEGER NOT NULL,
    path TEXT NOT NULL, sub TEXT, domain TEXT, title TEXT, section TEXT, text TEXT NOT NULL,
    char_start INTEGER, char_end INTEGER, line_start INTEGER, line_end INTEGER, page INTEGER,
    content_hash TEXT, doc_hash TEXT, tokens INTEGER, embed_hash TEXT
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(embed_hash);
"""

_CHUNK_COLS = (
    "id, path, domain, title, section, text, char_start, char_end, line_start, line_end, page,"
    " content_hash, doc_hash, doc_id, ordinal, sub, tokens"
)


def db_path(path: str) -> str | bytes:
    """A file path as stored: the str itself when it is valid UTF-8, else its raw bytes (a BLOB).

    Linux file names are bytes; Python keeps undecodable ones as surrogate-escaped str
    ('caf\\udce9.txt' for b'caf\\xe9.txt'), which SQLite cannot store as TEXT. A BLOB of
    `os.fsencode(path)` keeps the name losslessly, and UTF-8 names stay plain TEXT as before."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def py_path(value: str | bytes) -> str:
    """The inverse of `db_path`: the str the file was found under (surrogate-escaped if need be)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _row_to_chunk(r: tuple) -> Chunk:
    return Chunk(r[0], py_path(r[1]), *r[2:])


class DocStore:
    """Thin typed wrapper over one generation's SQLite file."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file so the generation is one self-contained file."""
        self.db.commit()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")

    def files(self) -> dict[str, tuple[int, int, str, str | None]]:
        """path -> (size, mtime_ns, file_hash, skip reason or None); skipped files are remembered so an
        unchanged bad file is not re-read on every run."""
        q = "SELECT path, size, mtime_ns, file_hash, skipped FROM files"
        return {py_path(p): (s, m, h, r) for p, s, m, h, r in self.db.execute(q)}

    def ids_by_embed_hash(self, paths: Iterable[str]) -> dict[str, int]:
        """embed_hash (of the exact embedded text) -> chunk id for the chunks of `paths`: their vectors
        are reused for new chunks whose embedded text did not change."""
        out: dict[str, int] = {}
        for p in paths:
            for h, i in self.db.execute("SELECT embed_hash, id FROM chunks WHERE path = ?", (db_path(p),)):
                out[h] = i
        return out

    def max_chunk_id(self) -> int:
        """Largest id ever given (AUTOINCREMENT never reuses ids, so later rows have larger ones)."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return int(row[0]) if row else 0

    def start_ids(self, next_chunk: int, next_document: int) -> None:
        """Number this segment's new chunks and documents from the given ids on: ids are unique across
        the segments of an index and grow with every segment, so a chunk id names one segment."""
        for table, n in (("chunks", next_chunk), ("documents", next_document)):
            self.db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
            self.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, int(n) - 1))

    def next_ids(self) -> tuple[int, int]:
        """(next chunk id, next document id) after every id this docstore has given."""
        rows = dict(self.db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return int(rows.get("chunks", 0)) + 1, int(rows.get("documents", 0)) + 1

    def chunk_ids_of(self, paths: Iterable[str]) -> list[int]:
        """Ids of the chunks of `paths`."""
        out: list[int] = []
        for p in paths:
            out += [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE path = ?", (db_path(p),))]
        return out

    def counts_of(self, paths: Iterable[str]) -> tuple[int, int, int, dict[str, int]]:
        """(files not skipped, documents, chunks, chunks per domain) of `paths` only."""
        files = docs = 0
        per: dict[str, int] = {}
        for p in paths:
            key = db_path(p)
            files += self.db.execute(
                "SELECT COUNT(*) FROM files WHERE path = ? AND skipped IS NULL", (key,)
            ).fetchone()[0]
            docs += self.db.execute("SELECT COUNT(*) FROM documents WHERE path = ?", (key,)).fetchone()[0]
            for dom, n in self.db.execute(
                "SELECT domain, COUNT(*) FROM chunks WHERE path = ? GROUP BY domain", (key,)
            ):
                per[dom] = per.get(dom, 0) + n
        return files, docs, sum(per.values()), per

    def copy_live_from(self, src: Path, dead_paths: list[str]) -> None:
        """Append the rows of another segment's docstore, ids unchanged, leaving out `dead_paths`."""
        self.db.commit()
        self.db.execute("ATTACH DATABASE ? AS src", (str(src),))
        try:
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS dead (path PRIMARY KEY)")
            self.db.execute("DELETE FROM temp.dead")
            self.db.executemany(
                "INSERT OR IGNORE INTO temp.dead VALUES (?)", [(db_path(p),) for p in dead_paths]
            )
            for table in ("files", "documents", "chunks"):
                self.db.execute(
                    f"INSERT INTO main.{table} SELECT * FROM src.{table}"
                    " WHERE path NOT IN (SELECT path FROM temp.dead)"
                )
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE src")

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id, ascending."""
        return np.array([r[0] for r in self.db.execute("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)

    def ids_and_hashes(self, after: int = 0) -> tuple[np.ndarray, list[str]]:
        """(chunk ids, their embed hashes) for ids > `after`, in id order."""
        rows = self.db.execute(
            "SELECT id, embed_hash FROM chunks WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def labels(self) -> tuple[list[str], list[str]]:
        """(domains, paths) of every chunk, in id order (a vector store's payload)."""
        rows = self.db.execute("SELECT domain, path FROM chunks ORDER BY id").fetchall()
        return [r[0] for r in rows], [py_path(r[1]) for r in rows]

    def delete_file(self, path: str) -> int:
        """Remove a file with its documents and chunks; returns the number of chunks removed."""
        key = db_path(path)
        n = self.db.execute("DELETE FROM chunks WHERE path = ?", (key,)).rowcount
        self.db.execute("DELETE FROM documents WHERE path = ?", (key,))
        self.db.execute("DELETE FROM files WHERE path = ?", (key,))
        return n

    def upsert_file(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        file_hash: str,
        domain: str,
        n_docs: int,
        skipped: str | None = None,
    ) -> None:
        if skipped is not None:
            # a skip reason may quote an undecodable file name: stored with readable escapes
            from gdn2_ingest.loaders.base import escape_surrogates

            skipped = escape_surrogates(skipped)
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (db_path(path), size, mtime_ns, file_hash, domain, n_docs, skipped),
        )

    def add_document(
        self, path: str, sub: str, title: str, domain: str, fmt: str, doc_hash: str, n: int
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO documents (path, sub, title, domain, fmt, doc_hash, n_chunks)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (db_path(path), sub, title, domain, fmt, doc_hash, n),
        )
        return int(cur.lastrowid)

    def add_chunks(self, rows: list[tuple]) -> None:
        """rows: (doc_id, ordinal, path, sub, domain, title, section, text, char_start, char_end,
        line_start, line_end, page, content_hash, doc_hash, tokens, embed_hash)."""
        self.db.executemany(
            "INSERT INTO chunks (doc_id, ordinal, path, sub, domain, title, section, text, char_start,"
            " char_end, line_start, line_end, page, content_hash, doc_hash, tokens, embed_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r[:2], db_path(r[2]), *r[3:]) for r in rows],
        )

    def commit(self) -> None:
        self.db.commit()

    def iter_texts(self) -> Iterator[tuple[int, str, str, str, str]]:
        """(id, path, title, section, text) in id order, for the keyword index."""
        for i, p, t, s, x in self.db.execute("SELECT id, path, title, section, text FROM chunks ORDER BY id"):
            yield i, py_path(p), t, s, x

    def get_chunks(self, ids: list[int]) -> list[Chunk]:
        if not ids:
            return []
        found: dict[int, Chunk] = {}
        for i in range(0, len(ids), 500):
            part = [int(x) for x in ids[i : i + 500]]
            q = f"SELECT {_CHUNK_COLS} FROM chunks WHERE id IN ({','.join('?' * len(part))})"
            for r in self.db.execute(q, part):
                found[r[0]] = _row_to_chunk(r)
        return [found[int(i)] for i in ids if int(i) in found]

    def neighbours(self, chunk_id: int, before: int, after: int) -> list[Chunk]:
        row = self.db.execute("SELECT doc_id, ordinal FROM chunks WHERE id = ?", (int(chunk_id),)).fetchone()
        if row is None:
            return []
        q = f"SELECT {_CHUNK_COLS} FROM chunks WHERE doc_id = ? AND ordinal BETWEEN ? AND ? ORDER BY ordinal"
        return [_row_to_chunk(r) for r in self.db.execute(q, (row[0], row[1] - before, row[1] + after))]

    def counts(self) -> tuple[int, int, int, dict[str, int]]:
        """(files, documents, chunks, chunks per domain)."""
        files = self.db.execute("SELECT COUNT(*) FROM files WHERE skipped IS NULL").fetchone()[0]
        docs = self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        per = dict(self.db.execute("SELECT domain, COUNT(*) FROM chunks GROUP BY domain").fetchall())
        return files, docs, sum(per.values()), per
