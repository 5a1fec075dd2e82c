"""Shared loader helpers: skip reasons, binary sniffing, encoding detection, titles."""

from __future__ import annotations

import re
from pathlib import Path


class SkipFile(Exception):
    """A file that cannot be ingested (binary, undecodable, corrupt, empty): the message is the reason."""


_CONTROL = set(range(0, 9)) | {11, 12} | set(range(14, 32))


def looks_binary(data: bytes) -> bool:
    """NUL bytes or many control bytes in the first 8 KiB mean binary (UTF-16 with a BOM is text)."""
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    if not head:
        return False
    ctrl = sum(1 for b in head if b in _CONTROL)
    return ctrl / len(head) > 0.05


UTF8_BOM = b"\xef\xbb\xbf"


def strip_bom(data: bytes) -> bytes:
    """`data` without a leading UTF-8 byte-order mark (editors on Windows write one)."""
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def decode_text(data: bytes) -> str:
    """UTF-8 when valid, else the encoding charset-normalizer detects (Windows-1252 on a tie);
    SkipFile when neither works."""
    if looks_binary(data):
        raise SkipFile("binary file")
    # a UTF-8 byte-order mark is never text, whatever encoding the rest turns out to be
    data = strip_bom(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        matches = from_bytes(data[:1_000_000])
        best = matches.best()
        if best is None:
            raise SkipFile("undecodable text (no encoding fits)") from None
        encoding = best.encoding
        # short Western text fits several code pages equally well and the detector's pick among
        # them is arbitrary (cp775 turns 'Señor' into 'Se±or'): prefer Windows-1252 on a tie
        if any(m.encoding == "cp1252" and m.chaos <= best.chaos for m in matches):
            encoding = "cp1252"
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise SkipFile(f"undecodable text (detected {encoding})") from None
    # one newline convention so char and line spans agree with what we store; a BOM decoded by another
    # codec (UTF-16's is dropped by Python, not every detector's pick does) goes too
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def why(exc: BaseException, limit: int = 100) -> str:
    """'TypeName: message' on one line, for skip reasons built from a library's exception."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg[:limit]}" if msg else type(exc).__name__


def gunzip_capped(data: bytes, cap: int, block: int = 1 << 20) -> bytes:
    """`data` gunzipped, read `block` bytes at a time; SkipFile as soon as the output passes `cap`
    bytes (a gzip bomb stops after reading cap + 1 bytes, in memory bounded by the cap), or when the
    stream is corrupt or truncated."""
    import gzip
    import io
    import zlib

    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            while True:
                part = gz.read(block)
                if not part:
                    break
                out += part
                if len(out) > cap:
                    raise SkipFile(f"oversized once decompressed (> {cap} bytes, max_expanded_bytes)")
    except (OSError, EOFError, zlib.error) as exc:
        raise SkipFile(f"corrupt gzip ({why(exc)})") from None
    return bytes(out)


_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """`text` with every lone surrogate written as a readable escape: an undecodable byte kept by
    surrogateescape (file names, 8-bit e-mail headers) as '\\xe9', any other one (JSON '\\ud800')
    as '\\ud800'. Such text can be stored (SQLite, JSON), tokenized and printed."""
    if not _SURROGATE.search(text):
        return text

    def esc(m: re.Match) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"

    return _SURROGATE.sub(esc, text)


_HEADING_MD = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def first_title(text: str, fallback: str, max_chars: int = 80) -> str:
    """The first markdown heading or first non-empty line, else the file name."""
    for line in text.splitlines()[:40]:
        s = line.strip()
        if not s or set(s) <= set("=-*#~^_`. "):
            continue
        m = _HEADING_MD.match(s)
        s = m.group(1) if m else s
        return s[:max_chars]
    return fallback


def titled(path: Path, text: str) -> str:
    """A markdown '# Heading' as is; otherwise the first line prefixed with the file name
    ('GPL-3: GNU GENERAL PUBLIC LICENSE'), which tells look-alike documents apart."""
    head = first_title(text, path.name)
    first = next((ln for ln in text.splitlines()[:40] if ln.strip()), "")
    stem = path.name
    if stem.lower() in head.lower() or _HEADING_MD.match(first.strip()):
        return head
    return f"{stem}: {head}"[:100]
