"""Domain detection for `--domain auto`: format first, then path words, then legal vocabulary density."""

from __future__ import annotations

import re

from gdn2_ingest.types import Document

_LEGAL_PATH = re.compile(
    r"licen[cs]e|copying|contract|agreement|polic(y|ies)|terms|\bnda\b|legal|gdpr|privacy|eula", re.I
)
_LEGAL_WORDS = re.compile(
    r"\b(shall|hereby|herein|thereof|hereunder|pursuant|warrant(?:y|ies)|liabilit(?:y|ies)|licensee|licensor"
    r"|indemnif\w+|governing law|terminat\w+|covenant|notwithstanding|copyright|jurisdiction)\b",
    re.I,
)


def detect_domain(doc: Document) -> str:
    """legal | support | code for one document."""
    if doc.fmt == "code":
        return "code"
    if doc.fmt in ("email", "record", "man"):
        return "support"
    name = doc.path.rsplit("/", 1)[-1]
    if _LEGAL_PATH.search(name):
        return "legal"
    sample = doc.text[:20_000]
    words = max(1, len(sample.split()))
    if len(_LEGAL_WORDS.findall(sample)) * 1000 / words >= 6.0:
        return "legal"
    if _LEGAL_PATH.search(doc.path):
        return "legal"
    return "support"
