"""A small in-memory index with ingest.Index's read API (docs/CONTRACTS.md), for fast pipeline tests.

Chunks are windows of lines with an overlap (verbatim slices of the file, with real line numbers);
"dense" search is cosine over hashed word counts, BM25 is the textbook formula. It is a real index,
just small and dependency-free, so tests exercise fusion, assembly and citations for real.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gdn2_ingest.types import Chunk

_WORD = re.compile(r"\w+")


@dataclass
class FakeStats:
    documents: int
    chunks: int
    domains: dict = field(default_factory=dict)
    embedder: str = "fake-hash-bow"
    dims: int = 0
    bytes: int = 0


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def chunk_file(
    path: Path, first_id: int, domain: str, lines_per_chunk: int = 4, overlap: int = 1
) -> list[Chunk]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    doc_hash = hashlib.sha1(text.encode()).hexdigest()
    chunks = []
    step = lines_per_chunk - overlap
    for i in range(0, max(1, len(lines) - overlap), step):
        j = min(len(lines), i + lines_per_chunk)
        # a chunk ends at its last line's end, without the newline (like most chunkers)
        body = "".join(lines[i:j]).rstrip("\n")
        if not body.strip():
            continue
        cs = starts[i]
        chunks.append(
            Chunk(
                id=first_id + len(chunks),
                path=str(path),
                domain=domain,
                title=path.name,
                section=lines[i].strip()[:40] if domain == "legal" else "",
                text=body,
                char_start=cs,
                char_end=cs + len(body),
                line_start=i + 1,
                line_end=j,
                page=None,
                content_hash=hashlib.sha1(body.encode()).hexdigest(),
                doc_hash=doc_hash,
            )
        )
    return chunks


class FakeIndex:
    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = {c.id: c for c in chunks}
        self.bags = {c.id: Counter(_words(c.text)) for c in chunks}
        self.df = Counter(w for bag in self.bags.values() for w in bag)
        self.avg_len = sum(sum(b.values()) for b in self.bags.values()) / max(1, len(self.bags))
        self.calls = Counter()

    @classmethod
    def from_files(cls, files: dict[Path, str], **kw) -> FakeIndex:
        chunks: list[Chunk] = []
        for path, domain in files.items():
            chunks += chunk_file(path, len(chunks), domain, **kw)
        return cls(chunks)

    def search_dense(self, query: str, k: int) -> list[tuple[int, float]]:
        self.calls["dense"] += 1
        q = Counter(_words(query))
        qn = math.sqrt(sum(v * v for v in q.values())) or 1.0
        scored = []
        for cid, bag in self.bags.items():
            dot = sum(q[w] * bag[w] for w in q)
            if dot:
                scored.append((cid, dot / (qn * math.sqrt(sum(v * v for v in bag.values())))))
        return sorted(scored, key=lambda x: -x[1])[:k]

    def search_bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        self.calls["bm25"] += 1
        n = len(self.bags)
        scored = []
        for cid, bag in self.bags.items():
            dl = sum(bag.values())
            s = 0.0
            for w in set(_words(query)):
                if w in bag:
                    idf = math.log(1 + (n - self.df[w] + 0.5) / (self.df[w] + 0.5))
                    s += idf * bag[w] * 2.2 / (bag[w] + 1.2 * (0.25 + 0.75 * dl / self.avg_len))
            if s > 0:
                scored.append((cid, s))
        return sorted(scored, key=lambda x: -x[1])[:k]

    def doc_freqs(self, text: str) -> dict[str, int]:
        return {w: self.df[w] for w in dict.fromkeys(_words(text))}

    def dictionary_words(self):
        """No word list by default (the names signal is off); a test sets `words` to turn it on."""
        return getattr(self, "words", None)

    def mentions(self, phrase: str) -> bool:
        pattern = re.compile(r"\b" + r"\W+".join(map(re.escape, _words(phrase))) + r"\b", re.IGNORECASE)
        return any(pattern.search(c.text) for c in self.chunks.values())

    def get_chunks(self, ids) -> list[Chunk]:
        return [self.chunks[i] for i in ids if i in self.chunks]

    def neighbours(self, chunk_id: int, before: int = 1, after: int = 1) -> list[Chunk]:
        c = self.chunks[chunk_id]
        return [
            o
            for o in self.chunks.values()
            if o.path == c.path and chunk_id - before <= o.id <= chunk_id + after
        ]

    def stats(self) -> FakeStats:
        return FakeStats(
            documents=len({c.path for c in self.chunks.values()}),
            chunks=len(self.chunks),
            domains=dict(Counter(c.domain for c in self.chunks.values())),
        )
