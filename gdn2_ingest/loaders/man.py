"""Man pages (gzipped roff, man and mdoc macros) rendered to plain text line by line.

No maintained Python library renders roff, and groff is not on every machine, so this keeps to the
subset that carries text: each source line becomes one output line (requests that print nothing become
blank), so line spans point at the decompressed page source.
"""

from __future__ import annotations

import re
from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text, gunzip_capped
from gdn2_ingest.types import Document

_GLYPHS = {
    "em": "\u2014", "en": "\u2013", "bu": "\u2022", "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d",
    "oq": "\u2018", "cq": "\u2019", "co": "\u00a9", "rg": "\u00ae", "ti": "~", "ha": "^", "hy": "-",
    "mi": "-", "pl": "+", "<=": "<=", ">=": ">=", "->": "->", "<-": "<-", "mu": "x", "de": "\u00b0",
}  # fmt: skip
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\s[+-]?\d+"), ""),
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\[kz]."), ""),
    (re.compile(r"\\[hvwlLoDbxHNSRXZ]'[^']*'"), ""),
    (re.compile(r"\\n(\[[^\]]*\]|\(..|.)"), ""),
]
_GLYPH = re.compile(r"\\\((..)|\\\[([^\]]{1,12})\]")
_SIMPLE = {"\\-": "-", "\\e": "\\", "\\&": "", "\\|": "", "\\^": "", "\\ ": " ", "\\c": "", "\\~": " ",
           "\\0": " ", "\\%": "", "\\'": "'", "\\`": "`", "\\.": ".", "\\,": "", "\\/": ""}  # fmt: skip
_SILENT = {
    "PP", "LP", "P", "RS", "RE", "br", "sp", "nf", "fi", "in", "ti", "ne", "ad", "na", "hy", "nh",
    "ft", "ps", "vs", "ll", "ta", "bp", "fam", "ie", "if", "el", "ig", "so", "UC", "PD", "DT", "Pp",
    "Bl", "El", "Ed", "Bd", "Ek", "Bk", "Lp", "Os", "Dd", "ns", "rs", "mk", "rt", "tr", "cc", "c2",
    "ec", "eo", "ss", "cs", "cu", "lt", "pl", "po", "pn", "nr", "ds", "as", "rm", "rn", "am", "de1",
    "de", "nx", "rd", "ex", "ab", "tm", "hc", "ch", "wh", "it", "em", "ev", "lf", "ul", "cflags", "pc",
    "mso", "EE", "EX", "YS", "TS", "TE", "ME", "MT", "UE", "UR", "rr", "als", "IX", "LINKSTYLE", "Sp", "Vb",
    "Ve", "cp", "do", "hw", "hla", "hlm", "hym", "kern", "pvs", "sty", "warn", "blm", "lsm", "ecs", "ecr",
}  # fmt: skip


def inline(text: str) -> str:
    """Strip font/size escapes and map common glyphs."""
    for rx, rep in _ESCAPES:
        text = rx.sub(rep, text)
    text = _GLYPH.sub(lambda m: _GLYPHS.get(m.group(1) or m.group(2), ""), text)
    for k, v in _SIMPLE.items():
        text = text.replace(k, v)
    return text


def _args(rest: str) -> list[str]:
    return [a[1:-1] if len(a) > 1 and a[0] == a[-1] == '"' else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def roff_to_text(src: str) -> tuple[str, str]:
    """(text, title) with one output line per source line."""
    out: list[str] = []
    title = ""
    skipping_macro = False
    for line in src.split("\n"):
        if skipping_macro:
            # ".." ends a definition; groff also accepts spaces after the control character (".  .")
            skipping_macro = re.fullmatch(r"[.']\s*\.\s*", line.strip()) is None
            out.append("")
            continue
        if line.startswith(('.\\"', "'\\\"", '.\\"', '\\"')) or line.strip() in (".", "'"):
            out.append("")
            continue
        if line[:1] in (".", "'"):
            name, _, rest = line[1:].strip().partition(" ")
            args = _args(inline(rest))
            if name in ("de", "de1", "am", "ig"):
                skipping_macro = True
                out.append("")
            elif name in ("TH", "Dt"):
                if args:
                    title = f"{args[0]}({args[1]})" if len(args) > 1 else args[0]
                out.append(title)
            elif name in ("SH", "Sh", "SS", "Ss"):
                # rendered as markdown headings so the support chunker starts a section there
                out.append(
                    ("# " + " ".join(args).upper()) if name in ("SH", "Sh") else "## " + " ".join(args)
                )
            elif name in ("TP", "IP", "HP") or name in _SILENT:
                out.append(" ".join(args) if name == "IP" and args else "")
            elif len(name) == 2 and name.isalpha() and name[0].isupper() and name[1] in "BIR":
                # .BR/.IR/.RB...: alternating fonts, words joined without spaces
                out.append("".join(args))
            else:
                # .B, .I, mdoc .Nm/.Nd/.Fl/.Ar...: print the arguments
                out.append(" ".join(args))
        else:
            out.append(inline(line))
    return "\n".join(out), title


def load_man(path: Path, data: bytes, max_expanded_bytes: int = 50_000_000) -> list[Document]:
    if path.suffix == ".gz":
        data = gunzip_capped(data, max_expanded_bytes)
    src = decode_text(data)
    if src.lstrip().startswith(".so ") and src.count("\n") <= 3:
        raise SkipFile(f"man page alias ({src.strip()})")
    text, title = roff_to_text(src)
    if not text.strip():
        raise SkipFile("man page has no text")
    name = path.name.removesuffix(".gz")
    return [Document(path=str(path), text=text, title=title or name, fmt="man")]
