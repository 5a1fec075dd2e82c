"""Plain text, markdown, reStructuredText and source code: decoded as text, structure left to the chunker."""

from __future__ import annotations

from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text, titled
from gdn2_ingest.types import Document


def load_text(path: Path, data: bytes, fmt: str, language: str | None = None) -> list[Document]:
    text = decode_text(data)
    if not text.strip():
        raise SkipFile("empty file")
    title = path.name if fmt == "code" else titled(path, text)
    return [Document(path=str(path), text=text, title=title, fmt=fmt, language=language)]
