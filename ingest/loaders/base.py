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


def decode_text(data: bytes) -> str:
    """UTF-8 when valid, else the encoding charset-normalizer detects (Windows-1252 on a tie);
    SkipFile when neither works."""
    if looks_binary(data):
        raise SkipFile("binary file")
    try:
        text = data.decode("utf-8-sig")
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
    # one newline convention so char and line spans agree with what we store
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
