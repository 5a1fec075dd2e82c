"""File -> documents. `load_file` picks a loader by extension (content sniffed when there is none).

Every loader returns `Document`s whose text chunks are exact slices of; a file that cannot be
ingested raises `SkipFile` with a one-line reason, which the pipeline counts and prints.
"""

from __future__ import annotations

import re
from pathlib import Path

from gdn2_ingest.config import IngestConfig
from gdn2_ingest.loaders.base import SkipFile, decode_text, escape_surrogates, gunzip_capped, looks_binary
from gdn2_ingest.types import Document

CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".rb": "ruby", ".sh": "bash", ".bash": "bash", ".php": "php", ".cs": "csharp", ".kt": "kotlin",
    ".kts": "kotlin", ".scala": "scala", ".lua": "lua", ".swift": "swift",
}  # fmt: skip
# bump when a loader starts accepting files it skipped before, so indexes retry their skipped files
LOADERS_VERSION = 3
TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text", ".text": "text"}
_MAN_NAME = re.compile(r"\.\d[a-z0-9]*(\.gz)?$", re.I)
_MAN_DIR = re.compile(r"(^|/)man\d?[a-z]*(/|$)")
# never worth reading: archives, media, compiled objects
_SKIP_EXT = {
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".zip", ".tar", ".tgz", ".xz", ".bz2", ".7z", ".so",
    ".o", ".a", ".pyc", ".class", ".jar", ".whl", ".exe", ".dll", ".mp3", ".mp4", ".wav", ".ttf", ".woff",
    ".woff2", ".sqlite", ".db", ".faiss", ".npy", ".pkl",
}  # fmt: skip


def detect_format(path: Path) -> tuple[str, str | None]:
    """(format, code language) from the file name."""
    name = path.name.lower()
    ext = path.suffix.lower()
    if ext in CODE_LANGUAGES:
        return "code", CODE_LANGUAGES[ext]
    if ext in TEXT_FORMATS:
        return TEXT_FORMATS[ext], None
    if ext in (".html", ".htm", ".xhtml"):
        return "html", None
    if ext in (".pdf", ".docx", ".eml", ".mbox", ".json", ".jsonl", ".ndjson", ".csv"):
        return {".ndjson": "jsonl"}.get(ext, ext[1:]), None
    if _MAN_NAME.search(name) and (ext == ".gz" or _MAN_DIR.search(str(path.parent))):
        return "man", None
    if ext == ".gz":
        return "gz", None
    if ext in _SKIP_EXT:
        return "binary", None
    return "text", None


def load_file(
    path: Path, data: bytes, record_fields: list[str] | None = None, max_expanded_bytes: int | None = None
) -> list[Document]:
    """Documents of one file; SkipFile for anything that cannot be ingested.

    `max_expanded_bytes` caps what a compressed file (.gz, a DOCX zip) may expand to
    (None: IngestConfig's default); decompression stops as soon as it is passed. Titles, sub keys and
    texts come back storable: a lone surrogate (an undecodable byte of a file name or e-mail header)
    is written as a readable escape ('\\xe9'), while `Document.path` keeps the exact name."""
    cap = IngestConfig.max_expanded_bytes if max_expanded_bytes is None else max_expanded_bytes
    try:
        docs = _load(path, data, record_fields, cap)
    except SkipFile as exc:
        # one printable line, whatever a library's message or a file name held
        reason = escape_surrogates(" ".join(str(exc).split()))
        raise SkipFile(reason[:300] or "unreadable file") from None
    for d in docs:
        d.title = escape_surrogates(d.title)
        d.sub = escape_surrogates(d.sub)
        d.text = escape_surrogates(d.text)
    return docs


def _load(path: Path, data: bytes, record_fields: list[str] | None, cap: int) -> list[Document]:
    fmt, lang = detect_format(path)
    if fmt == "binary":
        raise SkipFile(f"binary file type ({path.suffix})")
    if fmt == "gz":
        return _load_gzipped(path, data, record_fields, cap)
    if fmt == "man":
        from gdn2_ingest.loaders.man import load_man

        return load_man(path, data, cap)
    if fmt in ("pdf", "docx"):
        from gdn2_ingest.loaders import office

        return office.load_pdf(path, data) if fmt == "pdf" else office.load_docx(path, data, cap)
    if looks_binary(data):
        raise SkipFile("binary file")
    if fmt == "html":
        from gdn2_ingest.loaders.office import load_html

        return load_html(path, data)
    if fmt in ("eml", "mbox"):
        from gdn2_ingest.loaders import mail

        return mail.load_eml(path, data) if fmt == "eml" else mail.load_mbox(path, data)
    if fmt in ("json", "jsonl", "csv"):
        from gdn2_ingest.loaders.records import load_records

        return load_records(path, data, fmt, record_fields)
    from gdn2_ingest.loaders.text import load_text

    if fmt == "text" and data.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        from gdn2_ingest.loaders.office import load_html

        return load_html(path, data)
    return load_text(path, data, fmt, lang)


def _load_gzipped(path: Path, data: bytes, record_fields: list[str] | None, cap: int) -> list[Document]:
    """A gzipped text document (changelog.Debian.gz, NEWS.md.gz) loaded by its inner name; the
    documents keep the .gz path (line spans count lines of the expanded text)."""
    inner = path.with_suffix("")
    if detect_format(inner)[0] in ("binary", "gz", "pdf", "docx"):
        raise SkipFile(f"compressed file of an unsupported type ({inner.name})")
    raw = gunzip_capped(data, cap)
    docs = _load(inner, raw, record_fields, cap)
    for d in docs:
        d.path = str(path)
    return docs


__all__ = ["CODE_LANGUAGES", "LOADERS_VERSION", "SkipFile", "decode_text", "detect_format", "load_file"]
